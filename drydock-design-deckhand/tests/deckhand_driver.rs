//! The Deckhand driver through the public API, against a fake Deckhand and a fake Keystone
//! that speak real HTTP on 127.0.0.1.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use drydock_state_core::{DesignConfig, DesignResolver, Error};
use drydock_state_testsupport::http::{Body, Reply, Request, TestServer};

const TOKEN: &str = "static-TOKEN-secret";
const PASSWORD: &str = "keystone-PASSWORD-secret";
const RENDERED: &str = "/api/v1.0/revisions/42/rendered-documents";

fn fixture() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/designs/deckhand_site.yaml"),
    )
    .unwrap()
}

fn config(section: serde_json::Value) -> DesignConfig {
    let mut config = DesignConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(20),
        ..DesignConfig::default()
    };
    config
        .drivers
        .insert(drydock_design_deckhand::CONFIG_SECTION.into(), section);
    config
}

fn keystone_section(keystone: &TestServer) -> serde_json::Value {
    serde_json::json!({
        "keystone": {
            "auth_url": keystone.url("/identity/v3"),
            "username": "drydock",
            "password": PASSWORD,
            "project_name": "service",
            "project_domain_name": "ProjDomain",
        }
    })
}

fn resolver(config: &DesignConfig) -> DesignResolver {
    let mut resolver = DesignResolver::from_registry(config).unwrap();
    drydock_design_deckhand::register(&mut resolver, config).unwrap();
    let schemes = resolver.schemes();
    assert!(
        schemes.contains(&"deckhand+http") && schemes.contains(&"deckhand+https"),
        "{schemes:?}"
    );
    resolver
}

fn deckhand_uri(deckhand: &TestServer, path: &str) -> String {
    format!("deckhand+{}", deckhand.url(path))
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

/// A Deckhand that serves the fixture to requests bearing `accepted` tokens, 401 otherwise.
async fn fake_deckhand(accepted: &'static [&'static str]) -> TestServer {
    let body = fixture();
    TestServer::start(move |request, _| {
        if request.path != RENDERED {
            return Reply::status(404);
        }
        match request.header("x-auth-token") {
            Some(token) if accepted.contains(&token) => {
                Reply::ok(body.clone()).header("Content-Type", "application/x-yaml")
            }
            _ => Reply::status(401),
        }
    })
    .await
}

/// A Keystone that checks the password request and hands out `tok-1`, `tok-2`, ...
async fn fake_keystone(expires_in: chrono::Duration) -> TestServer {
    TestServer::start(move |request, n| {
        if request.method != "POST" || request.path != "/identity/v3/auth/tokens" {
            return Reply::status(404);
        }
        if !password_request_is_valid(request) {
            return Reply::status(401);
        }
        let expires_at = (chrono::Utc::now() + expires_in).to_rfc3339();
        Reply::status(201)
            .header("X-Subject-Token", &format!("tok-{}", n + 1))
            .header("Content-Type", "application/json")
            .body(
                serde_json::json!({"token": {"expires_at": expires_at, "methods": ["password"]}})
                    .to_string(),
            )
    })
    .await
}

fn password_request_is_valid(request: &Request) -> bool {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
        return false;
    };
    let identity = &body["auth"]["identity"];
    let user = &identity["password"]["user"];
    let project = &body["auth"]["scope"]["project"];
    request.header("content-type") == Some("application/json")
        && identity["methods"] == serde_json::json!(["password"])
        && user["name"] == "drydock"
        && user["password"] == PASSWORD
        && user["domain"]["name"] == "default"
        && project["name"] == "service"
        && project["domain"]["name"] == "ProjDomain"
}

#[tokio::test]
async fn revision_path_expands_and_token_is_sent() {
    let deckhand = fake_deckhand(&[TOKEN]).await;
    let config = config(serde_json::json!({ "token": TOKEN }));
    let document = resolver(&config)
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap();
    assert_eq!(document.bytes, fixture());
    assert_eq!(document.content_type.as_deref(), Some("application/x-yaml"));
    let request = &deckhand.requests()[0];
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, RENDERED);
    assert_eq!(request.header("x-auth-token"), Some(TOKEN));
}

#[tokio::test]
async fn api_path_is_used_as_is() {
    let server = TestServer::start(|_, _| Reply::ok("schema: drydock/Region/v1\n")).await;
    let path = "/api/v1.0/revisions/7/rendered-documents?metadata.label=application%3Ddrydock";
    resolver(&config(serde_json::json!({})))
        .fetch_uri(&deckhand_uri(&server, path))
        .await
        .unwrap();
    assert_eq!(server.requests()[0].path, path);
    assert_eq!(server.requests()[0].header("x-auth-token"), None);
}

#[tokio::test]
async fn keystone_token_is_obtained_checked_and_reused() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&["tok-1"]).await;
    let resolver = resolver(&config(keystone_section(&keystone)));
    for _ in 0..3 {
        let document = resolver
            .fetch_uri(&deckhand_uri(&deckhand, "/42"))
            .await
            .unwrap();
        assert_eq!(document.bytes, fixture());
    }
    assert_eq!(keystone.hits(), 1, "the token is reused until it expires");
    assert_eq!(deckhand.hits(), 3);
    assert!(deckhand
        .requests()
        .iter()
        .all(|r| r.header("x-auth-token") == Some("tok-1")));
}

#[tokio::test]
async fn expired_keystone_token_is_renewed() {
    // Keystone says each token expires in 10 s: within the renewal margin, so each fetch
    // authenticates again.
    let keystone = fake_keystone(chrono::Duration::seconds(10)).await;
    let deckhand = fake_deckhand(&["tok-1", "tok-2"]).await;
    let resolver = resolver(&config(keystone_section(&keystone)));
    for _ in 0..2 {
        resolver
            .fetch_uri(&deckhand_uri(&deckhand, "/42"))
            .await
            .unwrap();
    }
    assert_eq!(keystone.hits(), 2);
    assert_eq!(deckhand.requests()[1].header("x-auth-token"), Some("tok-2"));
}

#[tokio::test]
async fn unauthorized_reauthenticates_once() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    // tok-1 has been revoked: only a fresh token is accepted.
    let deckhand = fake_deckhand(&["tok-2"]).await;
    let document = resolver(&config(keystone_section(&keystone)))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap();
    assert_eq!(document.bytes, fixture());
    assert_eq!(keystone.hits(), 2);
    assert_eq!(deckhand.hits(), 2);
}

#[tokio::test]
async fn unauthorized_twice_is_an_error_without_secrets() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&[]).await;
    let error = resolver(&config(keystone_section(&keystone)))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap_err();
    let text = all_text(&error);
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains(PASSWORD) && !text.contains("tok-"), "{text}");
    assert_eq!(keystone.hits(), 2, "exactly one re-authentication");
    assert_eq!(deckhand.hits(), 2);
}

#[tokio::test]
async fn rejected_static_token_is_an_error_without_the_token() {
    let deckhand = fake_deckhand(&["another"]).await;
    let error = resolver(&config(serde_json::json!({ "token": TOKEN })))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap_err();
    let text = all_text(&error);
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert_eq!(deckhand.hits(), 1);
}

#[tokio::test]
async fn keystone_refusal_is_an_error_without_the_password() {
    let keystone = TestServer::start(|_, _| Reply::status(401)).await;
    let deckhand = fake_deckhand(&[]).await;
    let error = resolver(&config(keystone_section(&keystone)))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap_err();
    let text = all_text(&error);
    assert!(text.contains("keystone") && text.contains("401"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(deckhand.hits(), 0);
}

#[tokio::test]
async fn keystone_answer_without_subject_token_is_an_error() {
    let keystone = TestServer::start(|_, _| {
        Reply::status(201).body(r#"{"token":{"expires_at":"2099-01-01T00:00:00Z"}}"#)
    })
    .await;
    let deckhand = fake_deckhand(&[]).await;
    let error = resolver(&config(keystone_section(&keystone)))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("X-Subject-Token"), "{error}");
}

#[tokio::test]
async fn missing_revision_is_an_error_naming_the_status() {
    let deckhand = fake_deckhand(&[TOKEN]).await;
    let error = resolver(&config(serde_json::json!({ "token": TOKEN })))
        .fetch_uri(&deckhand_uri(&deckhand, "/43"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("404"), "{error}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn oversized_rendering_is_refused_while_streaming() {
    let deckhand = TestServer::start(|_, _| {
        Reply::status(200).with_body(Body::Chunked {
            len: 128 * 1024 * 1024,
        })
    })
    .await;
    let mut config = config(serde_json::json!({}));
    config.max_document_size = 64 * 1024;
    let error = resolver(&config)
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("exceeds the limit of 65536 bytes"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(deckhand.body_bytes_sent() < 64 * 1024 * 1024);
}

#[tokio::test]
async fn bad_references_are_invalid_input() {
    let resolver = resolver(&config(serde_json::json!({})));
    for uri in [
        "deckhand+https://deckhand:8443/",
        "deckhand+https://deckhand:8443/a/b",
        "deckhand+https://deckhand:8443/not-a-revision",
        "deckhand+https://user:pw@deckhand:8443/42",
    ] {
        let error = resolver.fetch_uri(uri).await.unwrap_err();
        assert!(
            matches!(error, Error::InvalidInput { .. }),
            "{uri}: {error}"
        );
        assert!(!error.to_string().contains(":pw@"), "{error}");
    }
}

#[tokio::test]
async fn concurrent_fetches_share_one_keystone_token() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&["tok-1"]).await;
    let resolver = Arc::new(resolver(&config(keystone_section(&keystone))));
    let uri = deckhand_uri(&deckhand, "/42");
    let fetches: Vec<_> = (0..8)
        .map(|_| {
            let resolver = resolver.clone();
            let uri = uri.clone();
            tokio::spawn(async move { resolver.fetch_uri(&uri).await })
        })
        .collect();
    for fetch in fetches {
        fetch.await.unwrap().unwrap();
    }
    assert_eq!(keystone.hits(), 1);
    assert_eq!(deckhand.hits(), 8);
}
