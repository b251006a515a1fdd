//! Durations in configuration: parsing a number of seconds or a human string (`30s`, `5m`,
//! `1h 30m`), the bound every duration setting respects ([`MAX_DURATION`]), and the serde
//! functions for [`Duration`] fields (`#[serde(with = "drydock_state_core::config::duration")]`).

use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

use crate::error::{Error, Result};

/// The longest duration any setting accepts: 36,500 days (100 years). Stores and drivers add
/// durations to the current time (a lease's expiry, a cache entry's, a fetch deadline), and
/// now plus this is still a time that chrono, PostgreSQL (`timestamptz`, `interval`, a
/// microsecond count in a `bigint`), SQLite (microseconds in an `INTEGER`) and
/// `std::time::Instant` all represent, so no accepted value can overflow them.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a duration: a whole number of seconds, or a human string such as `30s`, `5m`,
/// `1h 30m`, `30d`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid("duration", "is empty"));
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if text.starts_with('-') {
        return Err(Error::invalid("duration", "must not be negative"));
    }
    // humantime is given one term at a time and the sum is ours: its own running sum panics
    // (`Duration::new` overflow) when the nanoseconds carry into a total of u64::MAX seconds,
    // e.g. `18446744073709551615s 1000000000ns` (found while writing the fuzz oracle).
    let mut total = Duration::ZERO;
    for term in duration_terms(text)? {
        let term = humantime::parse_duration(term).map_err(|e| {
            Error::invalid("duration", format!("{e}; write e.g. 30s, 5m, 12h or 30d"))
        })?;
        total = total
            .checked_add(term)
            .ok_or_else(|| Error::invalid("duration", "too large"))?;
    }
    Ok(total)
}

/// Splits `5m30s` or `1h 30m` into its terms (`5m`, `30s`): digits, an optional fraction, optional
/// whitespace and a unit made of the letters humantime reads.
fn duration_terms(text: &str) -> Result<Vec<&str>> {
    let is_unit = |c: char| c.is_ascii_alphabetic() || c == 'µ';
    let mut terms = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(Error::invalid(
                "duration",
                format!(
                    "expected a number at byte {}; write e.g. 30s, 5m, 12h or 30d",
                    text.len() - rest.len()
                ),
            ));
        }
        let mut end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if let Some(fraction) = rest[end..].strip_prefix('.') {
            end += 1 + fraction
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(fraction.len());
        }
        end = rest.len() - rest[end..].trim_start().len();
        end += rest[end..]
            .find(|c| !is_unit(c))
            .unwrap_or(rest.len() - end);
        terms.push(rest[..end].trim_end());
        rest = rest[end..].trim_start();
    }
    Ok(terms)
}

/// Writes the duration as a human string (`1m 30s`).
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Reads seconds or a human string.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as 30s or a number of seconds")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration must not be negative"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Duration, E> {
            Duration::try_from_secs_f64(v).map_err(|_| {
                E::custom("a duration must be a finite, non-negative number of seconds")
            })
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Duration, E> {
            parse_duration(v).map_err(|_| {
                E::custom("expected a duration such as 30s, 5m or a number of seconds")
            })
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; that is figment's API.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;

    use figment::Jail;

    use super::*;
    use crate::config::Config;

    /// The string settings that are not durations.
    const NOT_DURATIONS: &[&str] = &["database.schema"];

    /// Every duration key of the configuration, as dotted keys: the string leaves of the
    /// serialized defaults (durations serialize as human strings, and the only other strings
    /// are [`NOT_DURATIONS`]), so a duration added later is covered without editing this list.
    fn duration_keys() -> Vec<String> {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let mut keys = Vec::new();
        for (section, fields) in defaults.as_object().unwrap() {
            for (field, value) in fields.as_object().unwrap() {
                if NOT_DURATIONS.contains(&format!("{section}.{field}").as_str()) {
                    continue;
                }
                if let Some(text) = value.as_str() {
                    assert!(parse_duration(text).is_ok(), "{section}.{field} = {text:?}");
                    keys.push(format!("{section}.{field}"));
                }
            }
        }
        keys
    }

    #[test]
    fn duration_keys_are_all_found() {
        assert_eq!(duration_keys().len(), 10, "{:?}", duration_keys());
    }

    /// Issue 10, item 6: a duration no store can add to the current time (the memory store
    /// panicked on `leader.grace_period = "1000000000d"`) is refused, naming the key and the
    /// file, for every duration key; the bound itself is accepted.
    #[test]
    fn too_large_duration_in_file_is_refused_naming_the_key() {
        for key in duration_keys() {
            let (section, field) = key.split_once('.').unwrap();
            for value in ["1000000000d", "36501d", "18446744073709551615"] {
                Jail::expect_with(|jail| {
                    jail.create_file("d.toml", &format!("[{section}]\n{field} = \"{value}\"\n"))?;
                    let e = Config::load(Some(Path::new("d.toml")))
                        .expect_err(&format!("{key} = {value} is refused"));
                    let text = e.to_string();
                    assert!(
                        matches!(&e, Error::Config { key: k, .. } if *k == key),
                        "{key} = {value}: {text}"
                    );
                    assert!(text.contains("d.toml"), "{text}");
                    assert!(text.contains("at most"), "{text}");
                    assert!(!text.contains(value), "echoes the value: {text}");
                    Ok(())
                });
            }
            Jail::expect_with(|jail| {
                jail.create_file("d.toml", &format!("[{section}]\n{field} = \"36500d\"\n"))?;
                let c = Config::load(Some(Path::new("d.toml"))).unwrap();
                assert_eq!(c, {
                    let mut v = serde_json::to_value(Config::default()).unwrap();
                    v[section][field] = "36500d".into();
                    serde_json::from_value::<Config>(v).unwrap()
                });
                Ok(())
            });
        }
    }

    /// The same bound through `DRYDOCK_` environment variables, whose error names the variable.
    #[test]
    fn too_large_duration_in_env_is_refused_naming_the_key() {
        for key in duration_keys() {
            let var = format!("DRYDOCK_{}", key.replace('.', "__").to_ascii_uppercase());
            for value in ["1000000000d", "36501d", "3153686400"] {
                Jail::expect_with(|jail| {
                    jail.set_env(&var, value);
                    let e = Config::load(None).expect_err(&format!("{var}={value} is refused"));
                    let text = e.to_string();
                    assert!(
                        matches!(&e, Error::Config { key: k, .. } if *k == key),
                        "{var}={value}: {text}"
                    );
                    assert!(text.contains(&var), "{text}");
                    assert!(!text.contains(value), "echoes the value: {text}");
                    Ok(())
                });
            }
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("-1d").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(
            parse_duration("1h30m 5 s 1.5ms").unwrap(),
            Duration::new(5405, 1_500_000)
        );
        assert!(parse_duration("5s x").is_err());
        // humantime alone panics on this one (its nanosecond carry overflows Duration::new).
        let e = parse_duration("18446744073709551615s 1000000000ns").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
    }
}
