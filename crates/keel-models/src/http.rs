//! What every HTTP provider shares: reading a provider's `Retry-After` hints and turning
//! transport failures and error responses into `ModelError`s of the right kind, with messages
//! that say what failed and what to check.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

use crate::{ModelError, ModelErrorKind};

/// The wait a provider asked for: `retry-after-ms` (OpenAI, Azure) wins over `Retry-After`,
/// which may be delta-seconds or an HTTP-date (a date in the past means "now").
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header("retry-after")?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    match httpdate::parse_http_date(value) {
        Ok(date) => Some(date.duration_since(now).unwrap_or(Duration::ZERO)),
        Err(_) => {
            tracing::debug!(
                value,
                "ignoring a Retry-After that is neither seconds nor an HTTP-date"
            );
            None
        }
    }
}

/// A failure to talk to the provider at all, or a body that broke off.
pub(crate) fn transport_error(provider: &str, url: &str, error: &reqwest::Error) -> ModelError {
    let detail = error_chain(error);
    if error.is_timeout() {
        ModelError::new(
            ModelErrorKind::Timeout,
            provider,
            format!("{url}: timed out: {detail}"),
        )
    } else if error.is_connect() {
        ModelError::new(
            ModelErrorKind::Unavailable,
            provider,
            format!(
                "cannot connect to {url}: {detail}; check that the server is running and base_url is right"
            ),
        )
    } else {
        ModelError::new(
            ModelErrorKind::Unavailable,
            provider,
            format!("{url}: connection failed: {detail}"),
        )
    }
}

/// An error and all its sources, since reqwest's own message hides the cause.
pub fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A deadline ran out.
pub(crate) fn timeout_error(provider: &str, what: &str, limit: Duration) -> ModelError {
    ModelError::new(
        ModelErrorKind::Timeout,
        provider,
        format!("{what} within {limit:?}; raise the timeout or try another target"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn reads_delta_seconds_http_dates_and_milliseconds() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        let date = [("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")];
        assert_eq!(
            retry_after(&headers(&date), now),
            Some(Duration::from_secs(30))
        );
        let past = [("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")];
        assert_eq!(retry_after(&headers(&past), now), Some(Duration::ZERO));
        let both = [("retry-after", "7"), ("retry-after-ms", "1500")];
        assert_eq!(
            retry_after(&headers(&both), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
