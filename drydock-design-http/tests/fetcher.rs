//! The shared fetcher as a third-party driver uses it: only the crate's public API, against
//! real servers on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drydock_design_http::{ErrorDetail, Exchange, Fetcher};
use drydock_state_core::{DesignConfig, DesignRef, Error, FetchOptions, Result};
use drydock_state_testsupport::http::{Reply, TestServer};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

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

fn options(config: &DesignConfig) -> FetchOptions {
    FetchOptions::from(config)
}

/// A made-up service: a key in a header, errors as `retry=<bool>;<message>` bodies, a key
/// renewed after a 401, and a key source that may fail first.
struct Acme {
    url: String,
    keys_handed_out: AtomicUsize,
    key_source_failures: usize,
    renewals: AtomicUsize,
    cache: bool,
}

impl Acme {
    fn new(server: &TestServer) -> Self {
        Acme {
            url: server.url("/doc"),
            keys_handed_out: AtomicUsize::new(0),
            key_source_failures: 0,
            renewals: AtomicUsize::new(0),
            cache: true,
        }
    }
}

#[async_trait]
impl Exchange for Acme {
    async fn request(&self, client: &reqwest::Client) -> Result<reqwest::RequestBuilder> {
        let n = self.keys_handed_out.fetch_add(1, Ordering::SeqCst);
        if n < self.key_source_failures {
            return Err(Error::DesignFetch {
                uri: self.url.clone(),
                reason: "the acme key service is down".into(),
                retryable: true,
                source: None,
            });
        }
        let key = format!("key-{}", self.renewals.load(Ordering::SeqCst));
        Ok(client.get(&self.url).header("X-Acme-Key", key))
    }

    async fn unauthorized(&self) -> bool {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        true
    }

    fn error_detail(&self, _: StatusCode, _: &HeaderMap, body: &[u8]) -> ErrorDetail {
        let text = String::from_utf8_lossy(body);
        let Some((retry, message)) = text.split_once(';') else {
            return ErrorDetail::default();
        };
        ErrorDetail {
            message: Some(message.trim().to_owned()),
            retry: retry.strip_prefix("retry=").and_then(|r| r.parse().ok()),
        }
    }

    fn cache_key(&self, design_ref: &DesignRef) -> Option<String> {
        self.cache.then(|| design_ref.without_credentials())
    }
}

fn acme_ref(server: &TestServer) -> DesignRef {
    DesignRef::parse(&format!("acme+{}", server.url("/doc"))).unwrap()
}

#[tokio::test]
async fn the_servers_message_and_retry_flag_are_honoured() {
    let server =
        TestServer::start(|_, _| Reply::status(503).body("retry=false;quota exhausted")).await;
    let config = config();
    let error = Fetcher::new(&config)
        .unwrap()
        .fetch(&acme_ref(&server), &options(&config), &Acme::new(&server))
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(
        error
            .to_string()
            .contains("HTTP status 503 Service Unavailable: quota exhausted"),
        "{error}"
    );
    assert_eq!(server.hits(), 1);

    let server = TestServer::start(|_, n| match n {
        0 => Reply::status(503).body("retry=true;warming up"),
        _ => Reply::ok("doc"),
    })
    .await;
    let document = Fetcher::new(&config)
        .unwrap()
        .fetch(&acme_ref(&server), &options(&config), &Acme::new(&server))
        .await
        .unwrap();
    assert_eq!(document.bytes, "doc");
    assert_eq!(document.source, server.url("/doc"));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_401_is_recovered_from_once_with_fresh_credentials() {
    let server = TestServer::start(|request, _| match request.header("x-acme-key") {
        Some("key-1") => Reply::ok("doc"),
        _ => Reply::status(401),
    })
    .await;
    let config = config();
    let acme = Acme::new(&server);
    Fetcher::new(&config)
        .unwrap()
        .fetch(&acme_ref(&server), &options(&config), &acme)
        .await
        .unwrap();
    assert_eq!(acme.renewals.load(Ordering::SeqCst), 1);
    assert_eq!(server.hits(), 2);

    let refusing = TestServer::start(|_, _| Reply::status(401)).await;
    let acme = Acme::new(&refusing);
    let error = Fetcher::new(&config)
        .unwrap()
        .fetch(&acme_ref(&refusing), &options(&config), &acme)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
    assert!(!error.is_retryable());
    assert_eq!(
        acme.renewals.load(Ordering::SeqCst),
        1,
        "one renewal per fetch"
    );
    assert_eq!(refusing.hits(), 2);
}

#[tokio::test]
async fn the_backoff_is_capped() {
    let server = TestServer::start(|_, n| match n {
        0..=2 => Reply::status(500),
        _ => Reply::ok("doc"),
    })
    .await;
    // Uncapped, three backoffs from 10 s would take more than 70 s.
    let config = DesignConfig {
        retry_backoff: Duration::from_secs(10),
        total_timeout: Duration::from_secs(120),
        ..config()
    };
    let started = Instant::now();
    Fetcher::new(&config)
        .unwrap()
        .with_max_backoff(Duration::from_millis(50))
        .fetch(&acme_ref(&server), &options(&config), &Acme::new(&server))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn a_failing_credential_source_is_retried_like_the_request() {
    let server = TestServer::start(|_, _| Reply::ok("doc")).await;
    let config = config();
    let acme = Acme {
        key_source_failures: 2,
        ..Acme::new(&server)
    };
    Fetcher::new(&config)
        .unwrap()
        .fetch(&acme_ref(&server), &options(&config), &acme)
        .await
        .unwrap();
    assert_eq!(acme.keys_handed_out.load(Ordering::SeqCst), 3);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn the_cache_follows_the_exchanges_key() {
    let server = TestServer::start(|_, _| Reply::ok("doc")).await;
    let config = DesignConfig {
        cache_ttl: Duration::from_secs(60),
        ..config()
    };
    let fetcher = Fetcher::new(&config).unwrap();
    let design_ref = acme_ref(&server);
    for _ in 0..2 {
        fetcher
            .fetch(&design_ref, &options(&config), &Acme::new(&server))
            .await
            .unwrap();
    }
    assert_eq!(server.hits(), 1, "cached under the reference");
    let uncached = Acme {
        cache: false,
        ..Acme::new(&server)
    };
    for _ in 0..2 {
        fetcher
            .fetch(&design_ref, &options(&config), &uncached)
            .await
            .unwrap();
    }
    assert_eq!(server.hits(), 3, "cache_key None: fetched each time");
}
