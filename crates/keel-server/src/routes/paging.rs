//! The page size and cursor of keel's own listings (`/v1/sessions`, `/v1/runs`, a session's
//! events), checked the same way everywhere: a 400 that says what was wrong.

use crate::error::ApiError;

/// `given` (else `default`) when it lies in `1..=max`.
pub fn limit(given: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = given.unwrap_or(default);
    match (1..=max).contains(&limit) {
        true => Ok(limit),
        false => Err(ApiError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {max}, got {limit}"),
        )),
    }
}

/// The id a `next_cursor` named, read by `parse`; `None` for the first page.
pub fn cursor<T, E>(
    given: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    given
        .map(|c| {
            parse(c).map_err(|_| {
                ApiError::invalid(
                    "invalid_cursor",
                    format!("cursor {c:?} is not a `next_cursor` this API gave out"),
                )
            })
        })
        .transpose()
}
