//! What a command prints: its [`Outcome`], written as JSON or text, always through the
//! redaction of [`redact`].

use std::io::Write;

use drydock_state::{Error, Result};
use serde_json::Value;

use crate::args::Output;

pub mod redact;
pub mod text;

/// What a command produced: JSON for `--output json`, text otherwise, and an exit status.
/// Both go through [`redact::redact_json`] / [`redact::redact_text`] before they are printed,
/// so no output shows a URI's password; only `document` (a fetched design, printed as the
/// text output and as the JSON field `document`) is printed as it is.
pub struct Outcome {
    json: Value,
    text: String,
    code: u8,
    document: Option<String>,
    /// Printed already, as the command ran (`worker`): nothing more to print.
    silent: bool,
}

impl Outcome {
    /// A result shown as `json` or `text`, exit status 0.
    pub fn new(json: Value, text: String) -> Self {
        Outcome {
            json,
            text,
            code: 0,
            document: None,
            silent: false,
        }
    }

    /// Nothing more to print (a command that printed as it went, like `worker`), status 0.
    pub fn nothing() -> Self {
        Outcome {
            silent: true,
            ..Outcome::new(Value::Null, String::new())
        }
    }

    /// The same result with exit status `code`.
    pub fn with_code(self, code: u8) -> Self {
        Outcome { code, ..self }
    }

    /// A fetched document: `meta` (redacted) in JSON with the document beside it, the
    /// document alone as text; the document's bytes are printed untouched.
    pub fn document(meta: Value, document: String) -> Self {
        Outcome {
            document: Some(document),
            ..Outcome::new(meta, String::new())
        }
    }

    /// Prints the outcome to standard output in `format` and returns its exit status. A
    /// closed pipe (`| head`) is not an error worth reporting.
    pub fn print(self, format: Output) -> Result<u8> {
        let code = self.code;
        let mut stdout = std::io::stdout().lock();
        let written = match format {
            _ if self.silent => Ok(()),
            Output::Json => writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&self.json_output()).unwrap_or_default()
            ),
            Output::Text => match self.text_output() {
                text if text.is_empty() => Ok(()),
                text => writeln!(stdout, "{}", text.trim_end()),
            },
        };
        if let Err(e) = written {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(Error::invalid("stdout", e.to_string()));
            }
        }
        Ok(code)
    }

    /// What `--output json` prints.
    fn json_output(mut self) -> Value {
        redact::redact_json(&mut self.json);
        if let Some(document) = self.document {
            self.json["document"] = Value::String(document);
        }
        self.json
    }

    /// What `--output text` prints.
    fn text_output(self) -> String {
        match self.document {
            Some(document) => document,
            None => redact::redact_text(&self.text).into_owned(),
        }
    }
}

/// Serializes a result for `--output json`; a failure is reported, never printed as `null`.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::Backend {
        message: format!("cannot render the result as JSON: {e}"),
        source: None,
    })
}
