//! The fuzzing oracles: one entry point per fuzz target, taking the fuzzer's raw bytes.
//!
//! The same functions run under `cargo fuzz` (`fuzz/`, which includes this file by path) and in
//! the normal test suite (`tests/fuzz_regressions.rs`, over the saved inputs in
//! `tests/fuzz-regressions/<target>/`), so a saved crash replays byte for byte. Structured
//! inputs are drawn from the bytes with the small [`Input`] reader below rather than the
//! `arbitrary` crate: its byte interpretation has changed between releases, which would
//! silently turn saved regression inputs into different test cases.

use std::time::Duration;

use drydock_state_core::config::{self, parse_duration};
use drydock_state_core::{redact_uri, Config, DesignRef, NewTask, Task};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;

/// Reads structured values from fuzz bytes; past the end every read is zero.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0 && n <= 256);
        usize::from(self.byte()) % n
    }

    fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.iter_mut().for_each(|b| *b = self.byte());
        u64::from_le_bytes(bytes)
    }

    fn pick<'s>(&mut self, choices: &[&'s str]) -> &'s str {
        choices[self.below(choices.len())]
    }

    /// A string of up to `max` bytes of input, invalid UTF-8 replaced.
    fn text(&mut self, max: usize) -> String {
        let len = self.below(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        String::from_utf8_lossy(head).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// design_ref

/// Fuzz target `design_ref`: the bytes as a URI (when UTF-8), then a URI assembled from
/// scheme, user, password, host, port and path drawn from the bytes.
pub fn design_ref(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_design_ref(text, None);
        check_redact_uri(text);
    }
    let mut input = Input::new(data);
    let scheme = match input.below(12) {
        0 => input.text(12),
        n => [
            "http",
            "https",
            "file",
            "deckhand+https",
            "deckhand+http",
            "postgres",
            "sqlite",
            "foo",
            "HTTPS",
            "ws",
            "echo",
        ][n - 1]
            .to_string(),
    };
    let user = input.text(12);
    let password = input.text(24);
    let host = match input.below(10) {
        0 => input.text(16),
        n => [
            "host",
            "example.com",
            "[::1]",
            "127.0.0.1",
            "",
            "xn--nxasmq6b",
            "ex%41mple",
            "d:8443",
            "Bücher.example",
        ][n - 1]
            .to_string(),
    };
    let port = match input.below(4) {
        0 => String::new(),
        1 => format!(":{}", input.u64() % 70_000),
        2 => format!(":{}", input.text(6)),
        _ => ":8443".into(),
    };
    let path = match input.below(3) {
        0 => input.text(24),
        1 => format!("/{}", input.text(24)),
        _ => "/site.yaml".into(),
    };
    let uri = format!("{scheme}://{user}:{password}@{host}{port}{path}");
    check_design_ref(&uri, Some(&password));
    check_redact_uri(&uri);
}

/// What the serialization of `url` shows besides its password: a candidate secret found in
/// one of these is there legitimately.
fn url_components(url: &url::Url) -> Vec<String> {
    let mut parts = vec![url.scheme().to_string(), url.username().to_string()];
    parts.extend(url.host_str().map(str::to_string));
    parts.extend(url.port().map(|p| p.to_string()));
    parts.push(url.path().to_string());
    parts.extend(url.query().map(str::to_string));
    parts.extend(url.fragment().map(str::to_string));
    parts
}

/// The candidate secrets that must not appear in a rendering of `url` with its password
/// hidden. A candidate is skipped when it could appear there legitimately: shorter than 4
/// bytes, found in another component, or holding a character the serialization puts between
/// components (so it could straddle two of them, or `***`). A serialized password never holds
/// `:` `/` `@` `?` `#` (the userinfo encode set), so the rule never skips the real one for
/// that reason.
fn hidden_secrets<'s>(url: &'s url::Url, raw_password: Option<&'s str>) -> Vec<&'s str> {
    let Some(password) = url.password() else {
        return Vec::new();
    };
    let components = url_components(url);
    [Some(password), raw_password]
        .into_iter()
        .flatten()
        .filter(|s| {
            s.len() >= 4
                && !s.contains([':', '/', '@', '?', '#', '[', ']'])
                && !components.iter().any(|c| c.contains(*s))
        })
        .collect()
}

/// A secret that can be looked for in any error message: 6+ ASCII letters and digits with
/// an uppercase letter and a digit (so no word of a fixed message, `IPv4` included, contains
/// it), occurring once in `text`.
fn strong_secret_once(secret: &str, text: &str) -> bool {
    let occurrences = (0..text.len())
        .filter(|&i| text.is_char_boundary(i) && text[i..].starts_with(secret))
        .count();
    secret.len() >= 6
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
        && secret.bytes().any(|b| b.is_ascii_uppercase())
        && secret.bytes().any(|b| b.is_ascii_digit())
        && occurrences == 1
}

/// `DesignRef::parse(text)` never panics; a parsed reference never shows its password in
/// `Display`, `Debug`, `redacted()` or `without_credentials()`; an error names `design_ref`
/// and never shows the password either.
pub fn check_design_ref(text: &str, raw_password: Option<&str>) {
    let parsed = url::Url::parse(text).ok();
    match DesignRef::parse(text) {
        Ok(r) => {
            assert_eq!(
                Some(r.url()),
                parsed.as_ref(),
                "DesignRef keeps the URL it parsed"
            );
            let redacted = r.redacted();
            assert_eq!(r.to_string(), redacted, "Display is the redacted URI");
            assert_eq!(format!("{r:?}"), format!("DesignRef({redacted})"));
            let without = r.without_credentials();
            for secret in hidden_secrets(r.url(), raw_password) {
                assert!(!redacted.contains(secret), "{secret:?} in {redacted:?}");
                assert!(!without.contains(secret), "{secret:?} in {without:?}");
            }
            if r.url().password().is_some() {
                assert_eq!(
                    url::Url::parse(&redacted)
                        .ok()
                        .as_ref()
                        .and_then(url::Url::password),
                    Some("***"),
                    "{redacted:?}"
                );
            }
            if let Ok(reparsed) = url::Url::parse(&without) {
                assert_eq!(reparsed.password(), None, "{without:?}");
                assert_eq!(reparsed.username(), "", "{without:?}");
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("design_ref"), "{message}");
            let secrets: Vec<&str> = match &parsed {
                Some(url) => [
                    url.password(),
                    raw_password.filter(|_| url.password().is_some()),
                ]
                .into_iter()
                .flatten()
                .collect(),
                None => raw_password.into_iter().collect(),
            };
            for secret in secrets {
                if strong_secret_once(secret, text) {
                    assert!(!message.contains(secret), "{secret:?} in {message:?}");
                }
            }
        }
    }
}

/// `redact_uri(text)` never panics and never returns the password of a URI that parses.
pub fn check_redact_uri(text: &str) {
    let redacted = redact_uri(text);
    if let Ok(url) = url::Url::parse(text) {
        for secret in hidden_secrets(&url, None) {
            assert!(!redacted.contains(secret), "{secret:?} in {redacted:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// task_json

/// Fuzz target `task_json`: a new task that decodes validates without panicking; a task that
/// decodes encodes, and decoding that gives the same task and the same bytes again.
pub fn task_json(data: &[u8]) {
    if let Ok(new) = serde_json::from_slice::<NewTask>(data) {
        let _ = new.validate();
    }
    let Ok(task) = serde_json::from_slice::<Task>(data) else {
        return;
    };
    let json = serde_json::to_vec(&task).expect("a decoded task encodes");
    let back: Task = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "re-decoding failed: {e}\n{}",
            String::from_utf8_lossy(&json)
        )
    });
    // The request context is stored but not shown to clients, so it does not round-trip.
    let shown = Task {
        request_context: None,
        ..task.clone()
    };
    assert_eq!(back, shown, "{}", String::from_utf8_lossy(&json));
    let again = serde_json::to_vec(&back).expect("a decoded task encodes");
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&json)
    );
    let value = task.to_json(true);
    let from_value: Task = serde_json::from_value(value).expect("and back");
    assert_eq!(
        from_value, task,
        "with the request context asked for, everything round-trips"
    );
}

// ---------------------------------------------------------------------------------------------
// duration_config

/// humantime's units with their length in nanoseconds, and whether humantime computes a
/// term of that unit in nanoseconds (overflowing at `u64::MAX` ns) rather than seconds.
const UNITS: &[(&str, u128, bool)] = &[
    ("ns", 1, true),
    ("nsec", 1, true),
    ("us", 1_000, true),
    ("µs", 1_000, true),
    ("ms", 1_000_000, true),
    ("millis", 1_000_000, true),
    ("s", 1_000_000_000, false),
    ("sec", 1_000_000_000, false),
    ("seconds", 1_000_000_000, false),
    ("m", 60_000_000_000, false),
    ("min", 60_000_000_000, false),
    ("h", 3_600_000_000_000, false),
    ("hours", 3_600_000_000_000, false),
    ("d", 86_400_000_000_000, false),
    ("days", 86_400_000_000_000, false),
    ("w", 604_800_000_000_000, false),
    ("M", 2_630_016_000_000_000, false),
    ("months", 2_630_016_000_000_000, false),
    ("y", 31_557_600_000_000_000, false),
    ("years", 31_557_600_000_000_000, false),
];

/// Fuzz target `duration_config`: the bytes as a duration and as TOML, then a duration and a
/// TOML configuration assembled from the bytes.
pub fn duration_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_parse_duration(text);
        let _ = config_from_toml(text);
    }
    let mut input = Input::new(data);
    check_structured_duration(&mut input);
    check_config_secrets(&mut input);
}

/// `parse_duration` never panics; whole seconds parse to that many seconds; empty and negative
/// input is refused; what parses survives the round trip through the form `Config` writes
/// (`humantime::format_duration`); the serde path agrees with `parse_duration`.
pub fn check_parse_duration(text: &str) {
    let result = parse_duration(text);
    let trimmed = text.trim();
    if let Ok(secs) = trimmed.parse::<u64>() {
        assert_eq!(
            result.as_ref().ok(),
            Some(&Duration::from_secs(secs)),
            "{text:?}"
        );
    }
    if (trimmed.is_empty() || trimmed.starts_with('-')) && result.is_ok() {
        panic!("{text:?} parsed as {result:?}");
    }
    match &result {
        Ok(d) => {
            let written = humantime::format_duration(*d).to_string();
            assert_eq!(
                parse_duration(&written).ok(),
                Some(*d),
                "{text:?} parsed as {d:?}, written as {written:?}"
            );
        }
        Err(e) => assert!(e.to_string().contains("duration"), "{e}"),
    }
    let via_serde = config::duration::deserialize(serde_json::Value::String(text.into()));
    assert_eq!(via_serde.ok(), result.ok(), "{text:?}");
}

/// A sum of terms such as `3h 20m 5s` parses to the sum, or is refused when it does not fit
/// a `Duration`.
fn check_structured_duration(input: &mut Input) {
    let terms = 1 + input.below(4);
    let mut text = String::new();
    let mut expected: Option<u128> = Some(0);
    for i in 0..terms {
        if i > 0 {
            text.push_str(input.pick(&["", " ", "  ", "\t"]));
        }
        let n = match input.below(3) {
            0 => u64::from(input.byte()),
            1 => input.u64() >> input.below(64),
            _ => input.u64(),
        };
        let (unit, nanos, in_nanos) = UNITS[input.below(UNITS.len())];
        text.push_str(&format!("{n}{}{unit}", input.pick(&["", "", " "])));
        let term = u128::from(n) * nanos;
        // humantime computes each term in u64 nanoseconds or u64 seconds.
        let term_fits = if in_nanos {
            term <= u128::from(u64::MAX)
        } else {
            term / 1_000_000_000 <= u128::from(u64::MAX)
        };
        expected = expected.filter(|_| term_fits).map(|sum| sum + term);
    }
    let expected = expected
        .filter(|total| total / 1_000_000_000 <= u128::from(u64::MAX))
        .map(|total| {
            Duration::new(
                (total / 1_000_000_000) as u64,
                (total % 1_000_000_000) as u32,
            )
        });
    assert_eq!(parse_duration(&text).ok(), expected, "{text:?}");
    check_parse_duration(&text);
}

/// `Config::from_figment` over the defaults and `text` as TOML.
pub fn config_from_toml(text: &str) -> drydock_state_core::Result<Config> {
    Config::from_figment(
        &Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text)),
    )
}

/// Markers put into generated TOML values: `secret` only where a password belongs (a database
/// URL's password, a driver setting named like a password, token or secret, a URL's password
/// in a driver setting), `value` anywhere else a value goes.
struct Markers {
    secret: String,
    value: String,
}

/// A generated value: `secret` says whether it sits in a place whose value is a secret,
/// `url_password` is the marker to put in the password of a URL value (the secret one only
/// where a URL is redacted: the database URL and driver settings; `ca_bundle` is a path,
/// shown as is).
fn toml_value(
    input: &mut Input,
    m: &Markers,
    secret: bool,
    url_password: &str,
    depth: u32,
) -> String {
    let marker = if secret { &m.secret } else { &m.value };
    match input.below(if depth > 2 { 12 } else { 14 }) {
        0 => toml_string(&format!("{}{marker}{}", input.text(6), input.text(6))),
        1 => toml_string(marker),
        2 => toml_string(&format!(
            "{}{marker}",
            input.pick(&["5s ", "30", "-1", "1h x"])
        )),
        3 => toml_string(&format!("https://u:{url_password}@h/x")),
        4 => (input.u64() as i64).to_string(),
        5 => input
            .pick(&[
                "0", "-0", "1.5", "-1", "1e308", "nan", "inf", "-inf", "0.0", "1e-10",
            ])
            .into(),
        6 => input.pick(&["true", "false"]).into(),
        7 => "1979-05-27T07:32:00Z".into(),
        // Malformed TOML: a bare word, an unterminated string, a literal string.
        8 => marker.clone(),
        9 => format!("\"{marker}"),
        10 => format!("'{marker}'"),
        11 => format!("'''{marker}\n'''"),
        12 => {
            let items: Vec<String> = (0..input.below(3))
                .map(|_| toml_value(input, m, secret, url_password, depth + 1))
                .collect();
            format!("[{}]", items.join(", "))
        }
        _ => {
            let key = input.pick(&["token", "password", "name", "Secret", "x"]);
            let value = toml_value(
                input,
                m,
                secret || is_secret_key(key),
                url_password,
                depth + 1,
            );
            format!("{{ {key} = {value} }}")
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "token", "secret"]
        .iter()
        .any(|s| key.contains(s))
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A configuration file with markers in its values: whatever `Config::from_figment` makes of
/// it, no error shows either marker, and a configuration it accepts shows no secret marker in
/// `Debug` or `to_redacted_json()`.
fn check_config_secrets(input: &mut Input) {
    let hex: String = (0..4).map(|_| format!("{:02x}", input.byte())).collect();
    let markers = Markers {
        secret: format!("s3cr3t-{hex}"),
        value: format!("v4lue-{hex}"),
    };
    let mut toml = String::new();
    for _ in 0..1 + input.below(6) {
        let (section, keys): (&str, &[&str]) = match input.below(5) {
            0 => (
                "[database]",
                &[
                    "url",
                    "pool_size",
                    "pool_timeout",
                    "pool_overflow",
                    "pool_pre_ping",
                    "pool_recycle",
                    "schema",
                    "poolsize",
                ],
            ),
            1 => (
                "[leader]",
                &["grace_period", "claim_interval", "poll_interval", "term"],
            ),
            2 => (
                "[design]",
                &[
                    "connect_timeout",
                    "read_timeout",
                    "total_timeout",
                    "retries",
                    "retry_backoff",
                    "cache_ttl",
                    "max_document_size",
                    "ca_bundle",
                    "danger_accept_invalid_certs",
                    "drivers",
                ],
            ),
            3 => (
                input.pick(&[
                    "[design.drivers.deckhand]",
                    "[design.drivers.http]",
                    "[design.drivers.deckhand.keystone]",
                ]),
                &["token", "password", "Secret", "url", "timeout", "user"],
            ),
            _ => (input.pick(&["[databse]", "", "[design.drivers]"]), &["x"]),
        };
        toml.push_str(section);
        toml.push('\n');
        for _ in 0..input.below(5) {
            let key = input.pick(keys);
            let value = if key == "url" && section == "[database]" && input.flag() {
                let url = format!(
                    "{}://{}:{}@{}/{}",
                    input.pick(&["postgres", "sqlite", "memory", "http", "no scheme"]),
                    input.pick(&["u", "drydock", ""]),
                    markers.secret,
                    input.pick(&["h", "db:5432", "[::1]", "bad host", ""]),
                    input.pick(&["drydock", "", "a b"]),
                );
                toml_string(&url)
            } else {
                let in_drivers = section.starts_with("[design.drivers") || key == "drivers";
                let url_password = if in_drivers || section == "[database]" {
                    &markers.secret
                } else {
                    &markers.value
                };
                let secret = in_drivers && is_secret_key(key);
                toml_value(input, &markers, secret, url_password, 0)
            };
            toml.push_str(&format!("{key} = {value}\n"));
        }
    }
    let markers_all = [&markers.secret, &markers.value];
    match config_from_toml(&toml) {
        Err(e) => {
            for text in [e.to_string(), format!("{e:?}")] {
                for marker in markers_all {
                    assert!(
                        !text.contains(marker.as_str()),
                        "{text}\n--- from ---\n{toml}"
                    );
                }
            }
        }
        Ok(config) => {
            for text in [format!("{config:?}"), config.to_redacted_json().to_string()] {
                assert!(
                    !text.contains(&markers.secret),
                    "{text}\n--- from ---\n{toml}"
                );
            }
        }
    }
}
