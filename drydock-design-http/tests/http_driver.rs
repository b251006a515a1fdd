//! The `http(s)://` driver through the public API, against real servers on 127.0.0.1.

use std::path::Path;
use std::time::{Duration, Instant};

use drydock_state_core::{DesignConfig, DesignResolver, Error};
use drydock_state_testsupport::http::{Body, Reply, TestPki, TestServer};

const SECRET: &str = "pa55-Hunter2-SECRET";

fn fixture() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/designs/site.yaml"))
        .unwrap()
}

/// Small timeouts and backoff so failures show quickly; no cache unless a test wants one.
fn config() -> DesignConfig {
    DesignConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(20),
        retries: 3,
        retry_backoff: Duration::from_millis(10),
        cache_ttl: Duration::ZERO,
        ..DesignConfig::default()
    }
}

fn resolver(config: &DesignConfig) -> DesignResolver {
    let mut resolver = DesignResolver::from_registry(config).unwrap();
    resolver
        .register(&drydock_design_http::REGISTRATION)
        .unwrap();
    let schemes = resolver.schemes();
    assert!(
        schemes.contains(&"http") && schemes.contains(&"https"),
        "{schemes:?}"
    );
    resolver
}

fn reason_of(error: &Error) -> &str {
    match error {
        Error::DesignFetch { reason, .. } => reason,
        other => panic!("expected a design fetch error, got {other:?}"),
    }
}

/// Display, Debug and every source of the error, for leak checks.
fn all_text(error: &Error) -> String {
    let mut text = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        text.push_str(&format!(" {e} {e:?}"));
        source = e.source();
    }
    text
}

#[tokio::test]
async fn ok_returns_the_exact_body() {
    let body = fixture();
    let served = body.clone();
    let server = TestServer::start(move |_, _| {
        Reply::ok(served.clone()).header("Content-Type", "application/x-yaml")
    })
    .await;
    let document = resolver(&config())
        .fetch_uri(&server.url("/designs/site.yaml"))
        .await
        .unwrap();
    assert_eq!(document.bytes, body);
    assert_eq!(document.content_type.as_deref(), Some("application/x-yaml"));
    assert_eq!(document.source, server.url("/designs/site.yaml"));
    assert_eq!(server.hits(), 1);
    assert_eq!(server.requests()[0].method, "GET");
    assert_eq!(server.requests()[0].path, "/designs/site.yaml");
}

#[tokio::test]
async fn not_found_is_an_error_and_not_retried() {
    let server = TestServer::start(|_, _| Reply::status(404)).await;
    let error = resolver(&config())
        .fetch_uri(&server.url("/missing.yaml"))
        .await
        .unwrap_err();
    assert!(reason_of(&error).contains("404"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let server = TestServer::start(|_, n| {
        if n == 0 {
            Reply::status(500)
        } else {
            Reply::ok("kind: Region\n")
        }
    })
    .await;
    let document = resolver(&config())
        .fetch_uri(&server.url("/site.yaml"))
        .await
        .unwrap();
    assert_eq!(&document.bytes[..], b"kind: Region\n");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn unavailable_forever_gives_up_after_all_retries_with_the_last_status() {
    let server = TestServer::start(|_, _| Reply::status(503)).await;
    let config = config();
    let error = resolver(&config)
        .fetch_uri(&server.url("/site.yaml"))
        .await
        .unwrap_err();
    assert_eq!(server.hits(), 1 + config.retries as usize);
    let reason = reason_of(&error);
    assert!(reason.contains("HTTP status 503"), "{reason}");
    assert!(reason.contains("after 4 attempts"), "{reason}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let server = TestServer::start(|_, n| {
        if n == 0 {
            Reply::status(429).header("Retry-After", "1")
        } else {
            Reply::ok("kind: Region\n")
        }
    })
    .await;
    let started = Instant::now();
    let document = resolver(&config())
        .fetch_uri(&server.url("/site.yaml"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(&document.bytes[..], b"kind: Region\n");
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_gives_up_at_once() {
    let server = TestServer::start(|_, _| Reply::status(429).header("Retry-After", "60")).await;
    let config = DesignConfig {
        total_timeout: Duration::from_secs(5),
        ..config()
    };
    let started = Instant::now();
    let error = resolver(&config)
        .fetch_uri(&server.url("/site.yaml"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(reason_of(&error).contains("429"), "{error}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn total_deadline_covers_retries() {
    let server = TestServer::start(|_, _| Reply::status(503)).await;
    let config = DesignConfig {
        total_timeout: Duration::from_millis(800),
        retries: 100,
        retry_backoff: Duration::from_millis(100),
        ..config()
    };
    let started = Instant::now();
    let error = resolver(&config)
        .fetch_uri(&server.url("/site.yaml"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(reason_of(&error).contains("503"), "{error}");
    assert!(server.hits() < 10, "{}", server.hits());
}

#[tokio::test]
async fn connection_refused_is_retried_then_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let config = DesignConfig {
        retries: 2,
        ..config()
    };
    let error = resolver(&config)
        .fetch_uri(&format!("http://127.0.0.1:{port}/site.yaml"))
        .await
        .unwrap_err();
    let reason = reason_of(&error);
    assert!(reason.contains("could not connect"), "{reason}");
    assert!(reason.contains("after 3 attempts"), "{reason}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn redirect_is_followed() {
    let server = TestServer::start(|request, _| {
        if request.path == "/old/site.yaml" {
            Reply::status(302).header("Location", "/new/site.yaml")
        } else {
            Reply::ok("kind: Region\n")
        }
    })
    .await;
    let document = resolver(&config())
        .fetch_uri(&server.url("/old/site.yaml"))
        .await
        .unwrap();
    assert_eq!(&document.bytes[..], b"kind: Region\n");
    assert_eq!(document.source, server.url("/new/site.yaml"));
    assert_eq!(server.hits(), 2);
    assert_eq!(server.requests()[1].path, "/new/site.yaml");
}

#[tokio::test]
async fn basic_auth_comes_from_the_uri_and_never_shows_in_errors() {
    let server = TestServer::start(|request, _| {
        if request.path == "/denied" {
            Reply::status(403)
        } else {
            Reply::ok("kind: Region\n")
        }
    })
    .await;
    // `@` and a space in the password, percent-encoded in the URI.
    let userinfo = format!("deploy:p%40ss%20{SECRET}");
    let resolver = resolver(&config());
    resolver
        .fetch_uri(&server.url_with_userinfo(&userinfo, "/site.yaml"))
        .await
        .unwrap();
    let request = &server.requests()[0];
    let expected = format!(
        "Basic {}",
        base64(format!("deploy:p@ss {SECRET}").as_bytes())
    );
    assert_eq!(request.header("authorization"), Some(expected.as_str()));
    assert_eq!(request.path, "/site.yaml");

    let error = resolver
        .fetch_uri(&server.url_with_userinfo(&userinfo, "/denied"))
        .await
        .unwrap_err();
    let text = all_text(&error);
    assert!(text.contains("403"), "{text}");
    assert!(!text.contains(SECRET), "password leaked: {text}");
    assert!(text.contains("deploy:***@"), "{text}");
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_host_on_redirect() {
    let other = TestServer::start(|_, _| Reply::ok("kind: Region\n")).await;
    let target = other.url("/elsewhere.yaml");
    let origin =
        TestServer::start(move |_, _| Reply::status(302).header("Location", &target)).await;
    resolver(&config())
        .fetch_uri(&origin.url_with_userinfo(&format!("deploy:{SECRET}"), "/site.yaml"))
        .await
        .unwrap();
    assert!(origin.requests()[0].header("authorization").is_some());
    assert_eq!(other.hits(), 1);
    assert_eq!(other.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn slow_response_hits_the_read_timeout() {
    let server =
        TestServer::start(|_, _| Reply::ok("late\n").delayed(Duration::from_secs(5))).await;
    let config = DesignConfig {
        read_timeout: Duration::from_millis(300),
        retries: 0,
        ..config()
    };
    let started = Instant::now();
    let error = resolver(&config)
        .fetch_uri(&server.url("/site.yaml"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(reason_of(&error).contains("timed out"), "{error}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn truncated_body_is_an_error() {
    let server = TestServer::start(|_, _| {
        Reply::status(200).with_body(Body::Truncated {
            declared: 10_000,
            sent: vec![b'x'; 100],
        })
    })
    .await;
    let config = DesignConfig {
        retries: 0,
        ..config()
    };
    let error = resolver(&config)
        .fetch_uri(&server.url("/site.yaml"))
        .await
        .unwrap_err();
    assert!(reason_of(&error).contains("interrupted"), "{error}");
    assert_eq!(server.hits(), 1);
}

const LIMIT: u64 = 1024 * 1024;
const HUGE: usize = 256 * 1024 * 1024;

async fn assert_refused_early(body: Body) {
    let server = TestServer::start(move |_, _| {
        Reply::status(200).with_body(match &body {
            Body::Generated { len } => Body::Generated { len: *len },
            Body::Chunked { len } => Body::Chunked { len: *len },
            _ => unreachable!(),
        })
    })
    .await;
    let config = DesignConfig {
        max_document_size: LIMIT,
        ..config()
    };
    let error = resolver(&config)
        .fetch_uri(&server.url("/huge.yaml"))
        .await
        .unwrap_err();
    assert!(
        reason_of(&error).contains("exceeds the limit of 1048576 bytes"),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert_eq!(server.hits(), 1);
    // The server stops writing once the driver hangs up; it must not have got far.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = server.body_bytes_sent();
    assert!(
        sent < 64 * 1024 * 1024,
        "{sent} bytes were sent before the driver gave up"
    );
}

#[tokio::test]
async fn oversized_document_with_content_length_is_refused_before_reading() {
    assert_refused_early(Body::Generated { len: HUGE }).await;
}

#[tokio::test]
async fn oversized_chunked_document_is_refused_while_streaming() {
    assert_refused_early(Body::Chunked { len: HUGE }).await;
}

#[tokio::test]
async fn cache_serves_repeats_without_a_request_until_the_ttl() {
    let server = TestServer::start(|_, n| Reply::ok(format!("revision: {n}\n"))).await;
    let config = DesignConfig {
        cache_ttl: Duration::from_millis(400),
        ..config()
    };
    let resolver = resolver(&config);
    let first = resolver.fetch_uri(&server.url("/site.yaml")).await.unwrap();
    let second = resolver.fetch_uri(&server.url("/site.yaml")).await.unwrap();
    assert_eq!(server.hits(), 1);
    assert_eq!(first, second);
    // The key has no credentials: the same document with user info is the same entry.
    resolver
        .fetch_uri(&server.url_with_userinfo(&format!("u:{SECRET}"), "/site.yaml"))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = resolver.fetch_uri(&server.url("/site.yaml")).await.unwrap();
    assert_eq!(server.hits(), 2);
    assert_eq!(&third.bytes[..], b"revision: 1\n");
}

#[tokio::test]
async fn tls_verifies_against_the_configured_ca_only() {
    let pki = TestPki::generate();
    let body = fixture();
    let served = body.clone();
    let server =
        TestServer::start_tls(pki.acceptor.clone(), move |_, _| Reply::ok(served.clone())).await;
    let uri = server.url("/site.yaml");
    assert!(uri.starts_with("https://127.0.0.1:"));

    let error = resolver(&config()).fetch_uri(&uri).await.unwrap_err();
    assert!(
        reason_of(&error).contains("TLS handshake failed"),
        "{error}"
    );
    assert!(
        !error.is_retryable(),
        "a bad certificate is not retried: {error}"
    );
    assert_eq!(server.hits(), 0);

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let config = DesignConfig {
        ca_bundle: Some(ca),
        ..config()
    };
    let document = resolver(&config).fetch_uri(&uri).await.unwrap();
    assert_eq!(document.bytes, body);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn danger_accept_invalid_certs_only_when_configured() {
    let pki = TestPki::generate();
    let server = TestServer::start_tls(pki.acceptor.clone(), |_, _| Reply::ok("ok\n")).await;
    let config = DesignConfig {
        danger_accept_invalid_certs: true,
        ..config()
    };
    let document = resolver(&config)
        .fetch_uri(&server.url("/x"))
        .await
        .unwrap();
    assert_eq!(&document.bytes[..], b"ok\n");
}

fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
