//! The `file://` driver through the public API: a resolver built from the registry, real files.

use std::path::{Path, PathBuf};

use drydock_design_file::FileDriver;
use drydock_state_core::{
    DesignConfig, DesignDriver, DesignRef, DesignResolver, Error, FetchOptions,
};
use serde::Deserialize as _;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/designs")
        .join(name)
}

fn file_uri(path: &Path) -> String {
    url::Url::from_file_path(path).unwrap().to_string()
}

fn resolver(config: &DesignConfig) -> DesignResolver {
    let mut resolver = DesignResolver::from_registry(config).unwrap();
    // The explicit fallback is harmless when inventory already registered the driver.
    resolver
        .register(&drydock_design_file::REGISTRATION)
        .unwrap();
    assert!(resolver.schemes().contains(&"file"), "{resolver:?}");
    resolver
}

fn reason_of(error: &Error) -> &str {
    match error {
        Error::DesignFetch { reason, .. } => reason,
        other => panic!("expected a design fetch error, got {other:?}"),
    }
}

#[tokio::test]
async fn absolute_path_reads_the_exact_bytes() {
    let path = fixture("site.yaml").canonicalize().unwrap();
    let document = resolver(&DesignConfig::default())
        .fetch_uri(&file_uri(&path))
        .await
        .unwrap();
    assert_eq!(&document.bytes[..], &std::fs::read(&path).unwrap()[..]);
    assert_eq!(document.content_type.as_deref(), Some("application/yaml"));
    assert_eq!(document.source, file_uri(&path));
    let nodes = serde_yaml::Deserializer::from_slice(&document.bytes)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|d| d["kind"] == "BaremetalNode")
        .count();
    assert_eq!(nodes, 4);
}

#[tokio::test]
async fn percent_encoded_path_is_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my site.json");
    std::fs::write(&path, br#"{"kind":"Region"}"#).unwrap();
    let uri = format!("file://{}/my%20site.json", dir.path().display());
    let document = resolver(&DesignConfig::default())
        .fetch_uri(&uri)
        .await
        .unwrap();
    assert_eq!(&document.bytes[..], br#"{"kind":"Region"}"#);
    assert_eq!(document.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn localhost_host_is_the_local_file_system() {
    let path = fixture("site.yaml").canonicalize().unwrap();
    let uri = format!("file://localhost{}", path.display());
    let document = resolver(&DesignConfig::default())
        .fetch_uri(&uri)
        .await
        .unwrap();
    assert_eq!(document.bytes.len() as u64, path.metadata().unwrap().len());
}

#[tokio::test]
async fn relative_form_is_refused_as_invalid_input() {
    let error = resolver(&DesignConfig::default())
        .fetch_uri("file://relative/site.yaml")
        .await
        .unwrap_err();
    match &error {
        Error::InvalidInput { field, reason } => {
            assert_eq!(field, "design_ref");
            assert!(reason.contains("absolute path"), "{reason}");
            assert!(reason.contains("relative"), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let error = resolver(&DesignConfig::default())
        .fetch_uri(&file_uri(&path))
        .await
        .unwrap_err();
    assert!(reason_of(&error).contains("no such file"), "{error}");
    assert!(error.to_string().contains("absent.yaml"), "{error}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = resolver(&DesignConfig::default())
        .fetch_uri(&file_uri(dir.path()))
        .await
        .unwrap_err();
    assert!(reason_of(&error).contains("is a directory"), "{error}");
}

#[tokio::test]
async fn file_over_the_size_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, vec![b'x'; 4097]).unwrap();
    let config = DesignConfig {
        max_document_size: 4096,
        ..DesignConfig::default()
    };
    let error = resolver(&config)
        .fetch_uri(&file_uri(&path))
        .await
        .unwrap_err();
    assert!(
        reason_of(&error).contains("exceeds the limit of 4096 bytes"),
        "{error}"
    );

    // Exactly the limit is fine.
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let document = resolver(&config).fetch_uri(&file_uri(&path)).await.unwrap();
    assert_eq!(document.bytes.len(), 4096);
}

#[tokio::test]
async fn limit_is_enforced_while_reading_not_only_from_metadata() {
    // A FIFO reports a length of 0 in its metadata, so only the streaming check can stop it:
    // the writer offers far more than the limit and the driver must give up at the limit.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("growing.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(writer_path)
            .unwrap();
        let chunk = vec![b'y'; 64 * 1024];
        let mut written = 0usize;
        // Stops when the reader closes its end (EPIPE) or after 64 MiB.
        while written < 64 * 1024 * 1024 && f.write_all(&chunk).is_ok() {
            written += chunk.len();
        }
        written
    });
    let options = FetchOptions {
        max_size: 1024 * 1024,
        deadline: std::time::Duration::from_secs(30),
    };
    let error = FileDriver::new()
        .fetch(&DesignRef::parse(&file_uri(&fifo)).unwrap(), &options)
        .await
        .unwrap_err();
    assert!(reason_of(&error).contains("exceeds the limit"), "{error}");
    let written = writer.join().unwrap();
    assert!(
        written < 64 * 1024 * 1024,
        "the driver read everything: {written}"
    );
}
