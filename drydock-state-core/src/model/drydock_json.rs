//! Reading JSON as Drydock wrote it: dates without a zone, `null` for empty lists, links as
//! `{rel: [href]}`, messages without a sequence. Used through `#[serde(deserialize_with)]` on
//! the model, so a task written by Drydock's API or found in its database reads back.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

use super::Link;

/// A time as RFC 3339, or as Python's `str(datetime)` (`2017-11-09 14:03:36.951263`, with or
/// without `+00:00`); a time without a zone is UTC, as Drydock wrote them.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for zoned in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, zoned) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for naive in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, naive) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Deserializes a time leniently (see [`parse_time`]).
pub(crate) fn time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    parse_time(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("{text:?} is not a date and time Drydock writes"))
    })
}

/// Deserializes an optional time leniently (see [`parse_time`]).
pub(crate) fn opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(text) => parse_time(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a date and time Drydock writes"))
        }),
    }
}

/// A list that Drydock may have written as `null`.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Links as a list of `{rel, href}` (Drydock's API) or as the `{rel: [href]}` map its task
/// objects and database keep (a single href for a rel is accepted too); `null` is none.
pub(crate) fn links<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Link>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Hrefs {
        Many(Vec<String>),
        One(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Links {
        List(Vec<Link>),
        Map(serde_json::Map<String, serde_json::Value>),
    }
    let Some(links) = Option::<Links>::deserialize(d)? else {
        return Ok(Vec::new());
    };
    match links {
        Links::List(list) => Ok(list),
        Links::Map(map) => {
            let mut out = Vec::new();
            for (rel, hrefs) in map {
                let hrefs = Hrefs::deserialize(hrefs).map_err(serde::de::Error::custom)?;
                match hrefs {
                    Hrefs::Many(many) => out.extend(many.into_iter().map(|href| Link {
                        rel: rel.clone(),
                        href,
                    })),
                    Hrefs::One(href) => out.push(Link { rel, href }),
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_times_read_as_utc() {
        let want = DateTime::parse_from_rfc3339("2017-11-09T14:03:36.951263Z").unwrap();
        for text in [
            "2017-11-09T14:03:36.951263Z",
            "2017-11-09 14:03:36.951263",
            "2017-11-09 14:03:36.951263+00:00",
            "2017-11-09T14:03:36.951263",
            "2017-11-09 15:03:36.951263+01:00",
        ] {
            assert_eq!(parse_time(text), Some(want.with_timezone(&Utc)), "{text}");
        }
        assert_eq!(
            parse_time("2017-11-09 14:03:36"),
            Some(
                DateTime::parse_from_rfc3339("2017-11-09T14:03:36Z")
                    .unwrap()
                    .with_timezone(&Utc)
            )
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
