//! What the services' error bodies say.
//!
//! Deckhand answers an error with a YAML `kind: Status` document (`message`, `retry`,
//! `details.messageList`); Promenade with the same document in JSON (`kind: status`);
//! keystonemiddleware (in front of both) and Keystone itself with
//! `{"error": {"code", "title", "message"}}`. YAML reads all three.

use drydock_design_http::ErrorDetail;
use serde_yaml::Value;

/// Longest message put into an error, in characters.
const MAX_MESSAGE: usize = 1000;

/// Most entries of `details.messageList` quoted besides the summary `message`.
const MAX_LISTED: usize = 3;

/// Reads an Airship `kind: Status` body or an OpenStack `{"error": ...}` body; anything else
/// gives no detail. Every occurrence of a string in `secrets` is replaced by `***`, so a
/// server that quotes the request back does not put a token or password in the error.
pub(crate) fn error_detail(service: &str, body: &[u8], secrets: &[&str]) -> ErrorDetail {
    let Ok(text) = std::str::from_utf8(body) else {
        return ErrorDetail::default();
    };
    let Ok(value) = serde_yaml::from_str::<Value>(text) else {
        return ErrorDetail::default();
    };
    let (message, retry) = if is_status(&value) {
        (
            status_message(&value),
            value.get("retry").and_then(Value::as_bool),
        )
    } else if let Some(error) = value.get("error").filter(|e| e.is_mapping()) {
        (
            error
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned),
            None,
        )
    } else {
        (None, None)
    };
    ErrorDetail {
        message: message
            .map(|m| clean(&m, secrets))
            .filter(|m| !m.is_empty())
            .map(|m| format!("{service} says: {m}")),
        retry,
    }
}

fn is_status(value: &Value) -> bool {
    value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.eq_ignore_ascii_case("status"))
}

/// The summary `message`, then the error entries of `details.messageList` that say more.
fn status_message(value: &Value) -> Option<String> {
    let summary = value
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let listed: Vec<&str> = value
        .get("details")
        .and_then(|d| d.get("messageList"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter(|m| m.get("error").and_then(Value::as_bool) != Some(false))
        .filter_map(|m| m.get("message").and_then(Value::as_str))
        .map(str::trim)
        .filter(|m| !m.is_empty() && *m != summary)
        .take(MAX_LISTED)
        .collect();
    let mut parts = Vec::with_capacity(listed.len() + 1);
    if !summary.is_empty() {
        parts.push(summary.as_str());
    }
    parts.extend(listed);
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// One line, secrets replaced, at most [`MAX_MESSAGE`] characters.
fn clean(message: &str, secrets: &[&str]) -> String {
    let mut text = message.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "***");
    }
    let mut line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if line.chars().count() > MAX_MESSAGE {
        line = line.chars().take(MAX_MESSAGE).collect::<String>() + "…";
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECKHAND_409: &str = "apiVersion: v1.0
code: 409 Conflict
details:
  errorCount: 1
  errorType: DuplicateDocumentExists
  messageList:
  - error: true
    message: Document [drydock/Region/v1, site] harbor already exists in bucket b2
  - error: false
    message: just information
kind: Status
message: Document with schema drydock/Region/v1 already exists
metadata: {}
reason: Unspecified
retry: false
status: Failure
";

    #[test]
    fn deckhand_status_message_and_retry_flag_are_read() {
        let d = error_detail("deckhand", DECKHAND_409.as_bytes(), &[]);
        assert_eq!(d.retry, Some(false));
        assert_eq!(
            d.message.as_deref(),
            Some(
                "deckhand says: Document with schema drydock/Region/v1 already exists; \
                 Document [drydock/Region/v1, site] harbor already exists in bucket b2"
            )
        );
        let body = DECKHAND_409.replace("retry: false", "retry: true");
        assert_eq!(
            error_detail("deckhand", body.as_bytes(), &[]).retry,
            Some(true)
        );
        let body = DECKHAND_409.replace("retry: false\n", "");
        assert_eq!(error_detail("deckhand", body.as_bytes(), &[]).retry, None);
    }

    #[test]
    fn promenade_json_and_keystone_errors_are_read() {
        let promenade = r#"{"kind": "status", "apiVersion": "v1.0", "metadata": {}, "status": "Failure", "message": "Design reference not found", "reason": "", "details": {"errorType": "x", "errorCount": 1, "messageList": [{"message": "Design reference not found", "error": true}]}, "code": "404 Not Found", "retry": false}"#;
        let d = error_detail("promenade", promenade.as_bytes(), &[]);
        assert_eq!(
            d.message.as_deref(),
            Some("promenade says: Design reference not found")
        );
        assert_eq!(d.retry, Some(false));

        let keystone = r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#;
        let d = error_detail("keystone", keystone.as_bytes(), &[]);
        assert_eq!(
            d.message.as_deref(),
            Some("keystone says: The request you have made requires authentication.")
        );
        assert_eq!(d.retry, None);
    }

    #[test]
    fn other_bodies_say_nothing_and_secrets_are_removed() {
        for body in [
            "error page\n",
            "",
            "kind: Region\nmessage: hi\n",
            "\u{0}\u{1}",
        ] {
            assert_eq!(
                error_detail("deckhand", body.as_bytes(), &[]),
                ErrorDetail::default(),
                "{body:?}"
            );
        }
        assert_eq!(
            error_detail("deckhand", &[0xff, 0xfe], &[]),
            ErrorDetail::default()
        );
        let body = "kind: Status\nmessage: \"token tok-SECRET refused\\nfor pw-SECRET\"\n";
        let d = error_detail(
            "deckhand",
            body.as_bytes(),
            &["tok-SECRET", "pw-SECRET", ""],
        );
        assert_eq!(
            d.message.as_deref(),
            Some("deckhand says: token *** refused for ***")
        );
        let long = format!("kind: Status\nmessage: {}\n", "x".repeat(5000));
        let d = error_detail("deckhand", long.as_bytes(), &[]);
        assert!(d.message.unwrap().chars().count() < MAX_MESSAGE + 20);
    }
}
