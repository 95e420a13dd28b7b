//! The one way a backend turns a record into stored JSON text: it refuses text nested deeper
//! than keel can read back (`keel_core::limits::MAX_STORED_JSON_DEPTH`), so no accepted write
//! can leave a row that every later reader fails on.

use keel_core::limits::{MAX_STORED_JSON_DEPTH, first_too_deep};
use serde::Serialize;

use crate::{RunRecord, StoreError};

/// `value` as JSON text, or `Invalid` naming `what` (e.g. "the options of run run_…"; only
/// formatted on an error).
pub(crate) fn json<T: Serialize + ?Sized>(
    value: &T,
    what: impl FnOnce() -> String,
) -> Result<String, StoreError> {
    match serde_json::to_string(value) {
        Ok(text) => readable(text, what),
        Err(e) => Err(StoreError::Invalid(format!(
            "{} cannot be encoded: {e}",
            what()
        ))),
    }
}

/// A queued run's input and options as stored: options `None` (NULL) when they are the
/// defaults, as for most runs.
pub(crate) fn run_input(run: &RunRecord) -> Result<(String, Option<String>), StoreError> {
    let input = json(&run.input, || format!("the input of run {}", run.id))?;
    let options = match run.options.is_default() {
        true => None,
        false => Some(json(&run.options, || {
            format!("the options of run {}", run.id)
        })?),
    };
    Ok((input, options))
}

/// `text` itself when it nests no deeper than a reader can go, else `Invalid`.
pub(crate) fn readable(text: String, what: impl FnOnce() -> String) -> Result<String, StoreError> {
    match first_too_deep(text.as_bytes(), MAX_STORED_JSON_DEPTH) {
        None => Ok(text),
        Some(_) => Err(StoreError::Invalid(format!(
            "{} nests arrays and objects deeper than {MAX_STORED_JSON_DEPTH} levels and could not be read back: \
             nothing was stored; send a flatter value",
            what()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_text_too_deep_to_read_back_and_keeps_the_rest() {
        let deep: serde_json::Value =
            serde_json::from_str(&format!("{}{}", "[".repeat(121), "]".repeat(121))).unwrap();
        let error = json(&deep, || "the metadata of session ses_1".into()).unwrap_err();
        assert!(
            error.to_string().contains("the metadata of session ses_1"),
            "{error}"
        );
        let fine: serde_json::Value =
            serde_json::from_str(&format!("{}{}", "[".repeat(120), "]".repeat(120))).unwrap();
        let text = json(&fine, || "x".into()).unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok());
    }
}
