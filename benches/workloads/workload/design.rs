//! W8: a 20 MiB site design fetched from a file and over HTTP, beside a plain read and a
//! plain GET of the same bytes.
//!
//! W8 runs its fetches in a child process of this program, so that the peak resident memory
//! it reports is the fetch's alone (not the server's, nor memory freed earlier in the run and
//! reused by the allocator without growing the resident set).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state::{DesignConfig, DesignResolver};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::baseline::Baselines;
use crate::report::Figure;
use crate::BenchResult;

/// W8: MB/s of the drivers and of the raw reads, and the peak resident memory of the drivers'
/// fetches.
pub struct W8 {
    size: usize,
    file_raw: f64,
    file_rate: f64,
    file_peak: u64,
    file_peak_all: u64,
    http_raw: f64,
    http_rate: f64,
    http_peak: u64,
    http_peak_all: u64,
}

pub async fn w8_design(s: usize) -> BenchResult<W8> {
    eprintln!("W8 design...");
    let size = 20 * 1024 * 1024 / s;
    let body = Arc::new(design_of(size));
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("site.yaml");
    std::fs::write(&path, &*body)?;
    let file_uri = format!("file://{}", path.display());
    let addr = serve(body.clone()).await;
    let http_uri = format!("http://{addr}/site.yaml");
    let (file_raw, ..) = w8_measure("raw", &file_uri, size).await?;
    let (file_rate, file_peak, file_peak_all) = w8_measure("driver", &file_uri, size).await?;
    let (http_raw, ..) = w8_measure("raw", &http_uri, size).await?;
    let (http_rate, http_peak, http_peak_all) = w8_measure("driver", &http_uri, size).await?;
    Ok(W8 {
        size,
        file_raw,
        file_rate,
        file_peak,
        file_peak_all,
        http_raw,
        http_rate,
        http_peak,
        http_peak_all,
    })
}

impl W8 {
    pub fn figures(&self, _: &Baselines) -> Vec<Figure> {
        let size = self.size;
        let within = |peak: u64| peak as f64 <= 1.2 * size as f64;
        vec![
            Figure::rate(
                "W8_file",
                self.file_rate,
                "MB/s",
                "file_read",
                Some(self.file_raw),
            )
            .with("peak_rss_bytes", json!(self.file_peak))
            .with("peak_rss_bytes_all_fetches", json!(self.file_peak_all))
            .with("document_bytes", json!(size))
            .target("peak <= 1.2 x document", |_| within(self.file_peak)),
            Figure::rate(
                "W8_http",
                self.http_rate,
                "MB/s",
                "http_get",
                Some(self.http_raw),
            )
            .with("peak_rss_bytes", json!(self.http_peak))
            .with("peak_rss_bytes_all_fetches", json!(self.http_peak_all))
            .with("document_bytes", json!(size))
            .target(">= 1,000 MB/s, peak <= 1.2 x document", |f| {
                f.value >= 1000.0 && within(self.http_peak)
            }),
        ]
    }
}

/// Serves `body` to every request on 127.0.0.1 until the runtime ends.
async fn serve(body: Arc<Vec<u8>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/x-yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    addr
}

/// A field of /proc/self/status in bytes (0 when it cannot be read).
fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// A site design of `size` bytes: many small YAML documents, as a real site has.
fn design_of(size: usize) -> Vec<u8> {
    let mut doc = Vec::with_capacity(size + 256);
    let mut i = 0;
    while doc.len() < size {
        let _ = write!(
            doc,
            "---\napiVersion: 'drydock/v1'\nkind: BaremetalNode\nmetadata:\n  name: node{i:07}\n  region: bench\nspec:\n  host_profile: compute\n  addressing:\n    - network: oob\n      address: 10.0.{}.{}\n",
            (i / 250) % 250,
            i % 250
        );
        i += 1;
    }
    doc.truncate(size);
    doc
}

pub const W8_CHILD: &str = "--w8-child";
const W8_REPEAT: usize = 5;

/// In the child: `--w8-child raw|driver URI SIZE`. Prints `best_secs peak_bytes`.
pub fn w8_child(mut args: impl Iterator<Item = String>) -> ! {
    let (Some(mode), Some(uri), Some(size)) = (args.next(), args.next(), args.next()) else {
        eprintln!("workloads {W8_CHILD}: give raw|driver URI SIZE");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("size");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (best, peak, peak_all) = runtime.block_on(async move {
        let design_config = DesignConfig {
            cache_ttl: Duration::ZERO,
            ..Default::default()
        };
        let mut resolver = DesignResolver::new(&design_config);
        resolver
            .register(&drydock_design_file::REGISTRATION)
            .expect("file driver");
        resolver
            .register(&drydock_design_http::REGISTRATION)
            .expect("http driver");
        let client = reqwest::Client::new();
        let path = uri.strip_prefix("file://").map(PathBuf::from);
        let fetch = || async {
            match (mode.as_str(), &path) {
                ("raw", Some(path)) => tokio::fs::read(path).await.expect("read").len(),
                ("raw", None) => client
                    .get(&uri)
                    .send()
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("body")
                    .len(),
                _ => resolver.fetch_uri(&uri).await.expect("fetch").bytes.len(),
            }
        };
        // The peak is the first fetch's, in a process that has fetched nothing yet: later
        // fetches may land in memory the allocator kept from earlier ones (glibc keeps a
        // freed 20 MiB block in the arena of whichever blocking thread read it), which says
        // nothing about the fetch itself. Writing 5 to clear_refs resets the peak (VmHWM)
        // to the current resident set.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let before = proc_status("VmRSS:");
        let started = Instant::now();
        let len = fetch().await;
        let mut best = started.elapsed().as_secs_f64();
        let peak = proc_status("VmHWM:").saturating_sub(before);
        assert_eq!(len, size, "the whole document");
        for _ in 1..W8_REPEAT {
            let started = Instant::now();
            let len = fetch().await;
            best = best.min(started.elapsed().as_secs_f64());
            assert_eq!(len, size, "the whole document");
        }
        // Reported beside the first fetch's: what a process that keeps fetching holds.
        let peak_all = proc_status("VmHWM:").saturating_sub(before);
        (best, peak, peak_all)
    });
    println!("{best} {peak} {peak_all}");
    std::process::exit(0);
}

/// Runs one W8 child and returns (MB/s of the best of [`W8_REPEAT`] fetches, the first
/// fetch's peak resident bytes above the process before it, the peak over all fetches).
async fn w8_measure(mode: &str, uri: &str, size: usize) -> Result<(f64, u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(exe)
        .args([W8_CHILD, mode, uri, &size.to_string()])
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "W8 {mode} child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let secs: f64 = fields.next().and_then(|s| s.parse().ok()).ok_or("secs")?;
    let peak: u64 = fields.next().and_then(|s| s.parse().ok()).ok_or("peak")?;
    let peak_all: u64 = fields
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("peak_all")?;
    Ok((size as f64 / 1e6 / secs, peak, peak_all))
}
