//! Failure classification and backoff: which failures are worth another attempt, and when.
//!
//! Each failure is classified where it arises (transport error, status, size), so the retry
//! loop only reads [`Error::is_retryable`] and never inspects messages.

use std::error::Error as StdError;
use std::time::Duration;

use drydock_state_core::{DesignRef, Error};
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// A failed attempt: the error to report, and how long the server asked us to wait.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry_after: Option<Duration>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
        }
    }
}

/// A failure of the transport (connect, TLS, timeout, interrupted body, redirects).
pub(crate) fn transport_failure(design_ref: &DesignRef, error: reqwest::Error) -> Failure {
    // The URL we request never holds credentials, but a redirect target might.
    let error = error.without_url();
    let (what, retryable) = if error.is_timeout() {
        ("timed out", true)
    } else if error.is_connect() && is_tls_rejection(&error) {
        // A certificate that does not verify will not verify on the next attempt either.
        ("TLS handshake failed", false)
    } else if error.is_connect() {
        ("could not connect", true)
    } else if error.is_redirect() {
        ("redirect failed", false)
    } else if error.is_builder() {
        ("invalid request", false)
    } else if error.is_body() || error.is_decode() {
        ("response body interrupted", true)
    } else {
        ("request failed", true)
    };
    Error::DesignFetch {
        uri: design_ref.redacted(),
        reason: format!("{what}: {}", chain(&error)),
        retryable,
        source: Some(Box::new(error)),
    }
    .into()
}

/// A non-2xx answer. 408, 429 and 5xx may pass; other statuses will not.
pub(crate) fn status_failure(
    design_ref: &DesignRef,
    status: StatusCode,
    headers: &HeaderMap,
) -> Failure {
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry_after(headers),
        _ => None,
    };
    Failure {
        error: design_ref.fetch_error(format!("HTTP status {status}"), retryable),
        retry_after,
    }
}

/// `Retry-After` in seconds. The HTTP-date form is not honoured: the backoff applies instead.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The wait before attempt `attempt + 1` (attempts count from 1): `base` doubled for each
/// attempt already made, plus up to half of that again at random so that clients that failed
/// together do not come back together.
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let delay = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let jitter_ms = (delay.as_millis() / 2).min(u128::from(u64::MAX)) as u64;
    let jitter = if jitter_ms == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=jitter_ms)
    };
    delay.saturating_add(Duration::from_millis(jitter))
}

/// Adds how many attempts were made to the reason of the final error.
pub(crate) fn after_attempts(error: Error, attempts: u32) -> Error {
    match error {
        Error::DesignFetch {
            uri,
            reason,
            retryable,
            source,
        } if attempts > 1 => Error::DesignFetch {
            uri,
            reason: format!("{reason} (after {attempts} attempts)"),
            retryable,
            source,
        },
        other => other,
    }
}

/// rustls reports a rejected certificate or handshake as an `InvalidData` I/O error, which the
/// connector may wrap in another I/O error (whose `source` skips the inner one).
fn is_tls_rejection(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(e) = source {
        let mut io = e.downcast_ref::<std::io::Error>();
        while let Some(inner) = io {
            if inner.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
            io = inner
                .get_ref()
                .and_then(|e| e.downcast_ref::<std::io::Error>());
        }
        source = e.source();
    }
    false
}

/// The error and its causes, `: `-separated, for a reason that says what really happened.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 1..=4 {
            let floor = base * (1 << (attempt - 1));
            let d = backoff(base, attempt);
            assert!(d >= floor && d <= floor + floor / 2, "{attempt}: {d:?}");
        }
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
        // Huge attempt counts saturate instead of overflowing.
        let _ = backoff(Duration::from_secs(1), u32::MAX);
    }

    #[test]
    fn statuses_are_classified() {
        let r = DesignRef::parse("https://u:pw@h/x").unwrap();
        let none = HeaderMap::new();
        for (code, retryable) in [
            (404, false),
            (401, false),
            (408, true),
            (429, true),
            (500, true),
            (503, true),
        ] {
            let f = status_failure(&r, StatusCode::from_u16(code).unwrap(), &none);
            assert_eq!(f.error.is_retryable(), retryable, "{code}");
            assert!(f.error.to_string().contains(&code.to_string()));
            assert!(!f.error.to_string().contains("pw"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let f = status_failure(&r, StatusCode::TOO_MANY_REQUESTS, &headers);
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            status_failure(&r, StatusCode::TOO_MANY_REQUESTS, &headers).retry_after,
            None
        );
    }
}
