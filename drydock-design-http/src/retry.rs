//! Failure classification and backoff: which failures are worth another attempt, and when.
//!
//! Each failure is classified where it arises (transport error, status, size), so the retry
//! loop only reads [`Error::is_retryable`] and never inspects messages.

use std::error::Error as StdError;
use std::time::Duration;

use drydock_state_core::{DesignRef, Error};

use crate::fetcher::ErrorDetail;
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

/// A failure of the transport (connect, TLS, timeout, interrupted body, redirects), its
/// reason prefixed with `context` (which server was talked to) when there is one.
pub(crate) fn transport_error(
    design_ref: &DesignRef,
    context: Option<&str>,
    error: reqwest::Error,
) -> Error {
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
    let reason = match context {
        Some(context) => format!("{context}: {what}: {}", chain(&error)),
        None => format!("{what}: {}", chain(&error)),
    };
    Error::DesignFetch {
        uri: design_ref.redacted(),
        reason,
        retryable,
        source: Some(Box::new(error)),
    }
}

/// Whether a status may pass on another attempt: 408, 429 and 5xx.
pub(crate) fn status_is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// A non-2xx answer. 408, 429 and 5xx may pass unless the server's own error body said
/// `retry: false`; other statuses will not, whatever the body says.
pub(crate) fn status_failure(
    design_ref: &DesignRef,
    status: StatusCode,
    headers: &HeaderMap,
    detail: &ErrorDetail,
) -> Failure {
    let retry_after = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry_after(headers),
        _ => None,
    };
    Failure {
        error: status_error(design_ref, None, status, detail),
        retry_after,
    }
}

/// The error for a non-2xx answer: `[context: ]HTTP status <status>[: <detail message>]`.
pub(crate) fn status_error(
    design_ref: &DesignRef,
    context: Option<&str>,
    status: StatusCode,
    detail: &ErrorDetail,
) -> Error {
    let retryable = status_is_transient(status) && detail.retry != Some(false);
    let mut reason = match context {
        Some(context) => format!("{context}: HTTP status {status}"),
        None => format!("HTTP status {status}"),
    };
    if let Some(message) = detail.message.as_deref().filter(|m| !m.is_empty()) {
        reason.push_str(": ");
        reason.push_str(message);
    }
    if detail.retry == Some(false) && status_is_transient(status) {
        reason.push_str(" (the server says not to retry)");
    }
    design_ref.fetch_error(reason, retryable)
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
/// together do not come back together; never more than `cap`.
pub(crate) fn backoff(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let delay = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    let jitter_ms = (delay.as_millis() / 2).min(u128::from(u64::MAX)) as u64;
    let jitter = if jitter_ms == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=jitter_ms)
    };
    delay.saturating_add(Duration::from_millis(jitter)).min(cap)
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
        let cap = Duration::from_secs(3600);
        for attempt in 1..=4 {
            let floor = base * (1 << (attempt - 1));
            let d = backoff(base, attempt, cap);
            assert!(d >= floor && d <= floor + floor / 2, "{attempt}: {d:?}");
        }
        assert_eq!(backoff(Duration::ZERO, 3, cap), Duration::ZERO);
        // Huge attempt counts saturate instead of overflowing, and the cap holds.
        let _ = backoff(Duration::from_secs(1), u32::MAX, Duration::MAX);
        let cap = Duration::from_millis(250);
        for attempt in 1..=20 {
            assert!(backoff(base, attempt, cap) <= cap, "{attempt}");
        }
        assert!(backoff(base, 20, cap) >= Duration::from_millis(250));
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
            let f = status_failure(
                &r,
                StatusCode::from_u16(code).unwrap(),
                &none,
                &ErrorDetail::default(),
            );
            assert_eq!(f.error.is_retryable(), retryable, "{code}");
            assert!(f.error.to_string().contains(&code.to_string()));
            assert!(!f.error.to_string().contains("pw"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let f = status_failure(
            &r,
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            &ErrorDetail::default(),
        );
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            status_failure(
                &r,
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                &ErrorDetail::default()
            )
            .retry_after,
            None
        );
    }

    #[test]
    fn the_servers_retry_flag_only_takes_retries_away() {
        let r = DesignRef::parse("https://h/x").unwrap();
        let said = |retry: Option<bool>| ErrorDetail {
            message: Some("database is locked".into()),
            retry,
        };
        let error = |code: u16, retry| {
            status_error(&r, None, StatusCode::from_u16(code).unwrap(), &said(retry))
        };
        assert!(!error(503, Some(false)).is_retryable());
        assert!(error(503, Some(true)).is_retryable());
        assert!(error(503, None).is_retryable());
        assert!(!error(409, Some(true)).is_retryable());
        let text = error(409, None).to_string();
        assert!(
            text.contains("HTTP status 409 Conflict: database is locked"),
            "{text}"
        );
    }
}
