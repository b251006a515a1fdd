//! Measures one fetch of a large generated design over `file://` or `http://` (a local server
//! streaming the file from disk): throughput, and the process's peak resident memory (VmHWM)
//! before and after, so the cost of the fetch itself shows.
//!
//! `cargo run --release -p drydock-design-http --example measure_fetch -- http 20`
//! (first argument `file` or `http`, second the size in MiB; run each in its own process).

use std::io::Write;
use std::time::{Duration, Instant};

use drydock_state_core::{DesignConfig, DesignResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "---
apiVersion: 'drydock/v1'
kind: BaremetalNode
metadata:
  name: NAME
  region: harbor
spec:
  host_profile: harbor-worker
  addressing:
    - network: provision
      address: dhcp
    - network: cluster
      address: 10.41.1.11
  metadata:
    rack: h01
";

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "file".into());
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("large-site.yaml");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let (mut written, mut n) = (0u64, 0u64);
    while written < mib * 1024 * 1024 {
        let doc = NODE.replace("NAME", &format!("node-{n:08}"));
        out.write_all(doc.as_bytes())?;
        written += doc.len() as u64;
        n += 1;
    }
    out.flush()?;
    drop(out);

    let uri = match mode.as_str() {
        "file" => url::Url::from_file_path(&path).unwrap().to_string(),
        "http" => format!("http://{}/large-site.yaml", serve(path.clone()).await?),
        other => return Err(format!("unknown mode {other}; use file or http").into()),
    };
    let config = DesignConfig {
        max_document_size: 256 * 1024 * 1024,
        cache_ttl: Duration::ZERO,
        ..DesignConfig::default()
    };
    let mut resolver = DesignResolver::new(&config);
    resolver
        .register(&drydock_design_file::REGISTRATION)?
        .register(&drydock_design_http::REGISTRATION)?;

    let before = peak_rss_kib();
    let started = Instant::now();
    let document = resolver.fetch_uri(&uri).await?;
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    assert_eq!(document.bytes.len() as u64, written);
    let mb = written as f64 / (1024.0 * 1024.0);
    println!(
        "{mode}: {mb:.1} MiB ({n} documents) in {:.1} ms = {:.0} MiB/s; peak RSS {} KiB before, {} KiB after (+{} KiB, {:.2}x the document)",
        elapsed.as_secs_f64() * 1000.0,
        mb / elapsed.as_secs_f64(),
        before,
        after,
        after - before,
        (after - before) as f64 / (written as f64 / 1024.0),
    );
    Ok(())
}

/// A one-file HTTP/1.1 server that streams `path` from disk in 64 KiB pieces.
async fn serve(path: std::path::PathBuf) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let path = path.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await?;
                let mut file = tokio::fs::File::open(&path).await?;
                let len = file.metadata().await?.len();
                let header = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/yaml\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(header.as_bytes()).await?;
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let n = file.read(&mut buffer).await?;
                    if n == 0 {
                        break;
                    }
                    stream.write_all(&buffer[..n]).await?;
                }
                stream.shutdown().await?;
                Ok::<_, std::io::Error>(())
            });
        }
    });
    Ok(addr)
}
