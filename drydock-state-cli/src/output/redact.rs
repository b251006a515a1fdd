//! The redaction every output goes through: no URI's password is printed.

use std::borrow::Cow;

use serde_json::Value;

/// `text` with the password of every URI in it replaced by `***`, the way
/// [`drydock_state::redact_uri`] shows a URI: a design reference, a URL quoted in a message,
/// a link. Words (runs without whitespace) that hold no URI with a password are kept byte for
/// byte; so is all the whitespace. Borrowed when nothing was hidden.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = redact_word(&rest[..end]);
        changed |= matches!(word, Cow::Owned(_));
        out.push_str(&word);
        rest = &rest[end..];
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// One word: as is unless it may carry a URI's password (`://` then `@`), which
/// [`drydock_state::redact_uri`] hides; a URL that parses and has no password is kept as
/// written (not normalised).
fn redact_word(word: &str) -> Cow<'_, str> {
    let Some(scheme_end) = word.find("://") else {
        return Cow::Borrowed(word);
    };
    if !word[scheme_end..].contains('@') {
        return Cow::Borrowed(word);
    }
    match url::Url::parse(word) {
        Ok(url) if url.password().is_none() => Cow::Borrowed(word),
        _ => Cow::Owned(drydock_state::redact_uri(word)),
    }
}

/// Redacts every string in a JSON value, and every object key, with [`redact_text`]: a task's
/// `design_ref`, its links, node filter and request context, its messages, anything else a
/// command prints.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(redacted) = redact_text(s) {
                *s = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            if map.keys().any(|k| matches!(redact_text(k), Cow::Owned(_))) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (redact_text(&k).into_owned(), v))
                    .collect();
            }
            map.values_mut().for_each(redact_json);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_keeps_everything_but_passwords() {
        assert_eq!(
            redact_text("https://user:hunter2@host/site.yaml"),
            "https://user:***@host/site.yaml"
        );
        assert_eq!(
            redact_text("a\tfetch (https://u:pw@h/x) and\nhttps://u:pw@h/y, then"),
            "a\tfetch (https://***@h/x) and\nhttps://u:***@h/y, then"
        );
        for kept in [
            "no uri here",
            "ssh://git@example.com/repo and HTTPS://Example.com",
            "https://h/x?mail=a@b",
            "user@host: x://y",
            "",
            "  ",
        ] {
            assert!(matches!(redact_text(kept), Cow::Borrowed(_)), "{kept:?}");
        }
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let mut value = serde_json::json!({
            "design_ref": "https://u:pw1@h/x",
            "links": [{"href": "deckhand+https://u:pw2@h/r/1"}],
            "node_filter": {"https://u:pw3@h/": "postgres://u:pw4@db/x"},
            "n": 1,
        });
        redact_json(&mut value);
        let text = value.to_string();
        for secret in ["pw1", "pw2", "pw3", "pw4"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(value["design_ref"], "https://u:***@h/x");
        assert_eq!(value["n"], 1);
    }
}
