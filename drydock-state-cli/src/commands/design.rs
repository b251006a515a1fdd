//! `design schemes` and `design fetch`: they need the design configuration, not the store.

use std::path::Path;

use drydock_state::{Config, DesignResolver, Error, Result};
use serde_json::{json, Value};

use crate::args::DesignCommand;
use crate::output::Outcome;

pub async fn run(cmd: DesignCommand, config: &Config) -> Result<Outcome> {
    let resolver = drydock_state::design_resolver(&config.design)?;
    match cmd {
        DesignCommand::Schemes => Ok(schemes(&resolver)),
        DesignCommand::Fetch { uri, output_file } => {
            fetch(&resolver, &uri, output_file.as_deref()).await
        }
    }
}

/// Every scheme served, with the driver serving it.
fn schemes(resolver: &DesignResolver) -> Outcome {
    let drivers = resolver.drivers();
    let json = Value::Array(
        drivers
            .iter()
            .map(|(s, d)| json!({"scheme": s, "driver": d}))
            .collect(),
    );
    let text = drivers
        .iter()
        .map(|(s, d)| format!("{s}\t{d}"))
        .collect::<Vec<_>>()
        .join("\n");
    Outcome::new(json, text)
}

/// The document at `uri`, printed as it is, or written to `output_file`.
async fn fetch(
    resolver: &DesignResolver,
    uri: &str,
    output_file: Option<&Path>,
) -> Result<Outcome> {
    let document = drydock_state::fetch_design(resolver, uri).await?;
    let meta = json!({
        "source": document.source,
        "content_type": document.content_type,
        "size": document.bytes.len(),
    });
    match output_file {
        Some(path) => {
            std::fs::write(path, &document.bytes).map_err(|e| {
                Error::invalid(
                    "output-file",
                    format!("cannot write {}: {e}", path.display()),
                )
            })?;
            let text = format!(
                "wrote {} bytes from {} to {}",
                document.bytes.len(),
                document.source,
                path.display()
            );
            Ok(Outcome::new(meta, text))
        }
        None => {
            let text = String::from_utf8(document.bytes.to_vec())
                .map_err(|_| Error::invalid("design", "is not UTF-8 text; use --output-file"))?;
            Ok(Outcome::document(meta, text))
        }
    }
}
