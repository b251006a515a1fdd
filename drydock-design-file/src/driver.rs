//! The `file://` driver: URI-to-path rules, size limits and the bounded read into one buffer.

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use drydock_state_core::{DesignDocument, DesignDriver, DesignRef, Error, FetchOptions, Result};

/// Reads design documents from the local file system.
#[derive(Clone, Debug, Default)]
pub struct FileDriver {
    _private: (),
}

impl FileDriver {
    /// A new driver; it has no configuration of its own.
    pub fn new() -> Self {
        FileDriver::default()
    }
}

#[async_trait]
impl DesignDriver for FileDriver {
    #[tracing::instrument(skip_all, fields(design_ref = %design_ref.without_credentials()))]
    async fn fetch(
        &self,
        design_ref: &DesignRef,
        options: &FetchOptions,
    ) -> Result<DesignDocument> {
        let path = local_path(design_ref)?;
        let io_error = |e: std::io::Error| fetch_io_error(design_ref, &path, e);

        let metadata = tokio::fs::metadata(&path).await.map_err(io_error)?;
        if metadata.is_dir() {
            return Err(design_ref.fetch_error(
                format!("{} is a directory, not a design document", path.display()),
                false,
            ));
        }
        let declared = metadata.len();
        if declared > options.max_size {
            return Err(too_large(design_ref, declared, options.max_size));
        }

        // One blocking read straight into one buffer: tokio's `File` would copy every chunk
        // through a buffer of its own and hop to the blocking pool once per 2 MiB.
        let max_size = options.max_size;
        let read_path = path.clone();
        let buffer = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            let file = std::fs::File::open(&read_path)?;
            // Metadata is a hint (a file may change under us); the buffer grows if it must.
            // The spare byte lets the read that finds the end do so without growing a full
            // buffer, which would double it (and the peak memory) for a byte never received.
            let mut buffer = Vec::with_capacity(declared.saturating_add(1) as usize);
            // One byte past the limit tells a file that grew past it from one that is exactly it.
            file.take(max_size.saturating_add(1))
                .read_to_end(&mut buffer)?;
            Ok(buffer)
        })
        .await
        .map_err(|e| design_ref.fetch_error(format!("the read did not finish: {e}"), true))?
        .map_err(io_error)?;
        if buffer.len() as u64 > max_size {
            return Err(too_large(design_ref, buffer.len() as u64, max_size));
        }
        tracing::debug!(bytes = buffer.len(), "design file read");
        Ok(DesignDocument {
            bytes: Bytes::from(buffer),
            content_type: content_type(&path).map(str::to_owned),
            source: design_ref.without_credentials(),
        })
    }
}

/// The absolute path a `file://` URI names, percent-decoded. A non-empty host other than
/// `localhost` is refused: it is almost always a relative path written as `file://dir/x`.
fn local_path(design_ref: &DesignRef) -> Result<PathBuf> {
    let url = design_ref.url();
    if let Some(host) = url.host_str() {
        if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
            return Err(Error::invalid(
                "design_ref",
                format!(
                    "{design_ref}: a file:// design reference needs an absolute path \
                     (file:///abs/path/site.yaml); `{host}` would be read as a host name, \
                     and relative paths are not supported"
                ),
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::invalid(
            "design_ref",
            format!("{design_ref}: a file:// design reference takes no query or fragment"),
        ));
    }
    let path = url.to_file_path().map_err(|()| {
        Error::invalid(
            "design_ref",
            format!("{design_ref} does not name an absolute local path"),
        )
    })?;
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(Error::invalid(
            "design_ref",
            format!("{design_ref}: the path contains a NUL byte"),
        ));
    }
    if !path.is_absolute() {
        return Err(Error::invalid(
            "design_ref",
            format!("{design_ref}: an absolute path is required"),
        ));
    }
    Ok(path)
}

fn fetch_io_error(design_ref: &DesignRef, path: &Path, error: std::io::Error) -> Error {
    let what = match error.kind() {
        ErrorKind::NotFound => "no such file",
        ErrorKind::PermissionDenied => "permission denied",
        _ => "cannot read",
    };
    // Interrupted reads and the like may succeed later; a missing file will not appear by
    // itself within one fetch.
    let retryable = matches!(
        error.kind(),
        ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
    );
    Error::DesignFetch {
        uri: design_ref.redacted(),
        reason: format!("{what}: {}", path.display()),
        retryable,
        source: Some(Box::new(error)),
    }
}

fn too_large(design_ref: &DesignRef, size: u64, limit: u64) -> Error {
    design_ref.fetch_error(
        format!("document of {size} bytes or more exceeds the limit of {limit} bytes"),
        false,
    )
}

fn content_type(path: &Path) -> Option<&'static str> {
    let extension = path.extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "yaml" | "yml" => Some("application/yaml"),
        "json" => Some("application/json"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(uri: &str) -> Result<PathBuf> {
        local_path(&DesignRef::parse(uri).unwrap())
    }

    #[test]
    fn paths() {
        assert_eq!(
            path_of("file:///tmp/my%20site.yaml").unwrap(),
            Path::new("/tmp/my site.yaml")
        );
        assert_eq!(
            path_of("file://localhost/etc/site.yaml").unwrap(),
            Path::new("/etc/site.yaml")
        );
        let e = path_of("file://relative/site.yaml").unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains("absolute path"), "{e}");
        assert!(path_of("file:///tmp/a%00b").is_err());
        assert!(path_of("file:///tmp/a?x=1").is_err());
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(Path::new("/a/site.YAML")),
            Some("application/yaml")
        );
        assert_eq!(
            content_type(Path::new("/a/site.json")),
            Some("application/json")
        );
        assert_eq!(content_type(Path::new("/a/site")), None);
    }
}
