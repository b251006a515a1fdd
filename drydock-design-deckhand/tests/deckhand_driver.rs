//! The Deckhand and Promenade driver through the public API, against stand-ins for Deckhand,
//! Promenade and Keystone that speak real HTTP on 127.0.0.1 and answer as the real services
//! do (airshipit/deckhand 08728d3 behind keystonemiddleware, airshipit/promenade, Keystone):
//!
//! * Keystone looks domains, users and projects up by id, or by name case-sensitively (the
//!   default domain has id `default` and name `Default`; a name given wins over an id given,
//!   as in Keystone's `_lookup_domain`), answers 201 with `X-Subject-Token`, and refuses
//!   anything wrong with 401 and its JSON error body;
//! * keystonemiddleware in front of Deckhand and Promenade refuses a bad token with 401 and
//!   the same JSON body;
//! * Deckhand answers errors with its YAML `kind: Status` document (`message`, `retry`),
//!   Promenade with the same document in JSON (`kind: status`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drydock_state_core::{DesignConfig, DesignResolver, Error};
use drydock_state_testsupport::http::{Body, Reply, Request, TestPki, TestServer};

const TOKEN: &str = "static-TOKEN-secret";
const PASSWORD: &str = "keystone-PASSWORD-secret";
const RENDERED: &str = "/api/v1.0/revisions/42/rendered-documents";
const JOIN: &str = "/api/v1.0/join-scripts?design_ref=deckhand%2Bhttp%3A%2F%2Fdeckhand%2F42&hostname=n1&ip=10.41.1.11";
const SCRIPT: &str = "#!/bin/bash\nset -ex\necho joining n1\n";

fn fixture() -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/designs/deckhand_site.yaml"),
    )
    .unwrap()
}

/// Short timeouts and backoff; no cache unless a test wants one.
fn config(section: serde_json::Value) -> DesignConfig {
    let mut config = DesignConfig {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(20),
        retries: 3,
        retry_backoff: Duration::from_millis(10),
        cache_ttl: Duration::ZERO,
        ..DesignConfig::default()
    };
    config
        .drivers
        .insert(drydock_design_deckhand::CONFIG_SECTION.into(), section);
    config
}

/// Keystone settings as an operator of a stock Keystone writes them: no domains.
fn keystone_section(keystone: &TestServer) -> serde_json::Value {
    keystone_section_with(keystone, serde_json::json!({}))
}

fn keystone_section_with(keystone: &TestServer, extra: serde_json::Value) -> serde_json::Value {
    let mut section = serde_json::json!({
        "auth_url": keystone.url("/identity/v3"),
        "username": "drydock",
        "password": PASSWORD,
        "project_name": "service",
    });
    section
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::json!({ "keystone": section })
}

fn resolver(config: &DesignConfig) -> DesignResolver {
    let mut resolver = DesignResolver::from_registry(config).unwrap();
    resolver
        .register(&drydock_design_deckhand::REGISTRATION)
        .unwrap();
    let schemes = resolver.schemes();
    for scheme in drydock_design_deckhand::SCHEMES {
        assert!(schemes.contains(scheme), "{schemes:?}");
    }
    resolver
}

fn deckhand_uri(deckhand: &TestServer, path: &str) -> String {
    format!("deckhand+{}", deckhand.url(path))
}

fn promenade_uri(promenade: &TestServer, path: &str) -> String {
    format!("promenade+{}", promenade.url(path))
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

/// What keystonemiddleware and Keystone answer to a request they do not authenticate.
fn openstack_401() -> Reply {
    Reply::status(401)
        .header("Content-Type", "application/json")
        .header("WWW-Authenticate", "Keystone uri=\"http://127.0.0.1/identity\"")
        .body(
            r#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#,
        )
}

/// Deckhand's error body (`deckhand.errors.format_error_resp`, dumped with `yaml.safe_dump`):
/// `retry` is true for a 500 and false otherwise unless `retry` says (None leaves it out).
fn deckhand_status(
    code: u16,
    phrase: &str,
    error_type: &str,
    message: &str,
    retry: Option<bool>,
) -> Reply {
    let quoted = serde_json::to_string(message).unwrap();
    let retry = match retry {
        Some(retry) => format!("retry: {retry}\n"),
        None => String::new(),
    };
    Reply::status(code)
        .header("Content-Type", "application/x-yaml")
        .body(format!(
            "apiVersion: v1.0\ncode: {code} {phrase}\ndetails:\n  errorCount: 1\n  \
             errorType: {error_type}\n  messageList:\n  - error: true\n    message: {quoted}\n\
             kind: Status\nmessage: {quoted}\nmetadata: {{}}\nreason: Unspecified\n{retry}\
             status: Failure\n"
        ))
}

/// A Deckhand mounted under `prefix` that serves revision 42 (the fixture) to requests bearing
/// `accepted` tokens; keystonemiddleware refuses others with 401.
async fn deckhand_at(prefix: &'static str, accepted: &'static [&'static str]) -> TestServer {
    let body = fixture();
    TestServer::start(move |request, _| {
        match request.header("x-auth-token") {
            Some(token) if accepted.contains(&token) => {}
            _ => return openstack_401(),
        }
        let path = request.path.split('?').next().unwrap_or_default();
        let Some(route) = path.strip_prefix(prefix) else {
            return deckhand_status(404, "Not Found", "HTTPNotFound", "", Some(false));
        };
        let revision = route
            .strip_prefix("/api/v1.0/revisions/")
            .and_then(|r| r.strip_suffix("/rendered-documents"));
        match revision {
            Some("42") => Reply::ok(body.clone()).header("Content-Type", "application/x-yaml"),
            Some(other) => deckhand_status(
                404,
                "Not Found",
                "HTTPNotFound",
                &format!("The requested revision={other} was not found"),
                Some(false),
            ),
            None => deckhand_status(404, "Not Found", "HTTPNotFound", "", Some(false)),
        }
    })
    .await
}

async fn fake_deckhand(accepted: &'static [&'static str]) -> TestServer {
    deckhand_at("", accepted).await
}

/// A Promenade that serves a join script on `/api/v1.0/join-scripts` to requests bearing
/// `accepted` tokens, and its JSON Status for a missing parameter.
async fn fake_promenade(accepted: &'static [&'static str]) -> TestServer {
    TestServer::start(move |request, _| {
        match request.header("x-auth-token") {
            Some(token) if accepted.contains(&token) => {}
            _ => return openstack_401(),
        }
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        if path != "/api/v1.0/join-scripts" {
            return Reply::status(404);
        }
        if !query.split('&').any(|p| p.starts_with("ip=")) {
            return Reply::status(400)
                .header("Content-Type", "application/json")
                .body(
                    r#"{"kind": "status", "apiVersion": "v1.0", "metadata": {}, "status": "Failure", "message": "Missing required parameter \"ip\" in the query string.", "reason": "Missing parameter", "details": {"errorType": "HTTPMissingParam", "errorCount": 1, "messageList": [{"message": "An error ocurred, but was not specified", "error": true}]}, "code": "400 Bad Request", "retry": false}"#,
                );
        }
        Reply::ok(SCRIPT).header("Content-Type", "text/x-shellscript")
    })
    .await
}

/// A stock Keystone's contents: the default domain (id `default`, name `Default`), a domain
/// `Ops` (id `d-ops`), the user `drydock` in the default domain, and a project `service` in
/// each domain.
const DOMAINS: &[(&str, &str)] = &[("default", "Default"), ("d-ops", "Ops")];
const PROJECTS: &[(&str, &str, &str)] = &[
    ("p-service", "service", "default"),
    ("p-ops", "service", "d-ops"),
];

/// Keystone's `_lookup_domain`: by name when a name is given (case-sensitive), else by id.
fn domain(value: &serde_json::Value) -> Option<&'static str> {
    if let Some(name) = value["name"].as_str() {
        return DOMAINS.iter().find(|(_, n)| *n == name).map(|(id, _)| *id);
    }
    let id = value["id"].as_str()?;
    DOMAINS.iter().find(|(i, _)| *i == id).map(|(id, _)| *id)
}

/// Keystone's checks of a password request scoped to a project: the project id, if it is
/// authenticated.
fn keystone_authenticates(request: &Request) -> Option<&'static str> {
    let body: serde_json::Value = serde_json::from_slice(&request.body).ok()?;
    let identity = &body["auth"]["identity"];
    if request.header("content-type") != Some("application/json")
        || identity["methods"] != serde_json::json!(["password"])
    {
        return None;
    }
    let user = &identity["password"]["user"];
    let user_ok = match user["id"].as_str() {
        Some(id) => id == "u-drydock",
        None => user["name"] == "drydock" && domain(&user["domain"]) == Some("default"),
    };
    if !user_ok || user["password"] != PASSWORD {
        return None;
    }
    let project = &body["auth"]["scope"]["project"];
    if let Some(name) = project["name"].as_str() {
        let domain = domain(&project["domain"])?;
        PROJECTS
            .iter()
            .find(|(_, n, d)| *n == name && *d == domain)
            .map(|(id, _, _)| *id)
    } else {
        let id = project["id"].as_str()?;
        PROJECTS
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(id, _, _)| *id)
    }
}

/// A Keystone (see [`keystone_authenticates`]) that hands out `tok-1`, `tok-2`, ...
async fn fake_keystone(expires_in: chrono::Duration) -> TestServer {
    let issued = Arc::new(AtomicUsize::new(0));
    TestServer::start(move |request, _| {
        if request.method != "POST" || request.path != "/identity/v3/auth/tokens" {
            return Reply::status(404);
        }
        let Some(project) = keystone_authenticates(request) else {
            return openstack_401();
        };
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        let now = chrono::Utc::now();
        Reply::status(201)
            .header("X-Subject-Token", &format!("tok-{n}"))
            .header("Content-Type", "application/json")
            .body(
                serde_json::json!({"token": {
                    "methods": ["password"],
                    "user": {"id": "u-drydock", "name": "drydock",
                             "domain": {"id": "default", "name": "Default"}},
                    "project": {"id": project},
                    "issued_at": now.to_rfc3339(),
                    "expires_at": (now + expires_in).to_rfc3339(),
                    "catalog": [],
                }})
                .to_string(),
            )
    })
    .await
}

fn keystone_request(keystone: &TestServer, index: usize) -> serde_json::Value {
    serde_json::from_slice(&keystone.requests()[index].body).unwrap()
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
    assert_eq!(request.header("accept"), Some("application/x-yaml"));
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

/// Item 6: a Deckhand mounted under a path prefix, by API path and by revision shorthand.
#[tokio::test]
async fn deckhand_behind_a_path_prefix() {
    let deckhand = deckhand_at("/deckhand", &[TOKEN]).await;
    let resolver = resolver(&config(serde_json::json!({ "token": TOKEN })));
    for path in [
        "/deckhand/api/v1.0/revisions/42/rendered-documents",
        "/deckhand/42",
    ] {
        let document = resolver
            .fetch_uri(&deckhand_uri(&deckhand, path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(document.bytes, fixture());
    }
    let requests = deckhand.requests();
    assert!(requests
        .iter()
        .all(|r| r.path == format!("/deckhand{RENDERED}")));
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

/// Item 6: settings without any domain work against a stock Keystone, because the default
/// domain is named by its id, `default`, which every Keystone has.
#[tokio::test]
async fn default_domains_work_against_a_stock_keystone() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&["tok-1"]).await;
    resolver(&config(keystone_section(&keystone)))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap();
    let sent = keystone_request(&keystone, 0);
    assert_eq!(
        sent["auth"]["identity"]["password"]["user"]["domain"],
        serde_json::json!({"id": "default"})
    );
    assert_eq!(
        sent["auth"]["scope"]["project"],
        serde_json::json!({"name": "service", "domain": {"id": "default"}})
    );
}

/// Item 6: names are case-sensitive: `default` is the default domain's id, not its name. The
/// refusal carries Keystone's message and says what was asked for, never the password, and
/// is not retried.
#[tokio::test]
async fn domain_names_are_case_sensitive() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&["tok-1"]).await;
    let error = resolver(&config(keystone_section_with(
        &keystone,
        serde_json::json!({"user_domain_name": "default"}),
    )))
    .fetch_uri(&deckhand_uri(&deckhand, "/42"))
    .await
    .unwrap_err();
    let text = all_text(&error);
    assert!(
        text.contains("401")
            && text.contains("keystone says: The request you have made requires authentication.")
            && text.contains("domain with name \"default\"")
            && text.contains("name \"Default\""),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!error.is_retryable());
    assert_eq!(keystone.hits(), 1, "a refusal is not retried");
    assert_eq!(deckhand.hits(), 0);

    // The right name works.
    resolver(&config(keystone_section_with(
        &keystone,
        serde_json::json!({"user_domain_name": "Default", "project_domain_name": "Ops"}),
    )))
    .fetch_uri(&deckhand_uri(&deckhand, "/42"))
    .await
    .unwrap();
    assert_eq!(
        keystone_request(&keystone, 1)["auth"]["scope"]["project"]["domain"],
        serde_json::json!({"name": "Ops"})
    );
}

/// Item 6: ids take precedence over names (only the id is sent), and a project by id needs
/// no domain.
#[tokio::test]
async fn ids_take_precedence_and_a_project_id_needs_no_domain() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&["tok-1"]).await;
    resolver(&config(keystone_section_with(
        &keystone,
        serde_json::json!({
            "user_domain_id": "default", "user_domain_name": "no-such-domain",
            "project_id": "p-ops", "project_name": "no-such-project",
            "project_domain_name": "no-such-domain",
        }),
    )))
    .fetch_uri(&deckhand_uri(&deckhand, "/42"))
    .await
    .unwrap();
    let sent = keystone_request(&keystone, 0);
    assert_eq!(
        sent["auth"]["identity"]["password"]["user"]["domain"],
        serde_json::json!({"id": "default"})
    );
    assert_eq!(
        sent["auth"]["scope"]["project"],
        serde_json::json!({"id": "p-ops"})
    );
}

/// Item 6: Keystone's own failures go through the shared fetcher's retries.
#[tokio::test]
async fn a_keystone_outage_is_retried() {
    let issued = Arc::new(AtomicUsize::new(0));
    let keystone = TestServer::start(move |request, n| {
        if n == 0 {
            return Reply::status(503);
        }
        if keystone_authenticates(request).is_none() {
            return openstack_401();
        }
        issued.fetch_add(1, Ordering::SeqCst);
        Reply::status(201)
            .header("X-Subject-Token", "tok-1")
            .body(r#"{"token": {"expires_at": "2099-01-01T00:00:00Z"}}"#)
    })
    .await;
    let deckhand = fake_deckhand(&["tok-1"]).await;
    resolver(&config(keystone_section(&keystone)))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap();
    assert_eq!(keystone.hits(), 2);
    assert_eq!(deckhand.hits(), 1);
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
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&[]).await;
    let mut section = keystone_section(&keystone);
    section["keystone"]["password"] = "wrong-PASSWORD-secret".into();
    let error = resolver(&config(section))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap_err();
    let text = all_text(&error);
    assert!(text.contains("keystone") && text.contains("401"), "{text}");
    assert!(!text.contains("wrong-PASSWORD-secret"), "{text}");
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

/// Item 6: Deckhand's `message` is in the error.
#[tokio::test]
async fn missing_revision_is_an_error_with_deckhands_message() {
    let deckhand = fake_deckhand(&[TOKEN]).await;
    let error = resolver(&config(serde_json::json!({ "token": TOKEN })))
        .fetch_uri(&deckhand_uri(&deckhand, "/43"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(
            "HTTP status 404 Not Found: deckhand says: The requested revision=43 was not found"
        ),
        "{text}"
    );
    assert!(!error.is_retryable());
    assert_eq!(deckhand.hits(), 1);
}

/// Item 6: a 5xx whose Status says `retry: false` is not retried.
#[tokio::test]
async fn a_5xx_saying_retry_false_is_not_retried() {
    let deckhand = TestServer::start(|_, _| {
        deckhand_status(
            503,
            "Service Unavailable",
            "BarbicanServerException",
            "Barbican is unavailable and will not be soon",
            Some(false),
        )
    })
    .await;
    let error = resolver(&config(serde_json::json!({ "token": TOKEN })))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("503") && text.contains("Barbican is unavailable and will not be soon"),
        "{text}"
    );
    assert!(!error.is_retryable(), "{text}");
    assert_eq!(deckhand.hits(), 1);
}

/// Item 6: a 5xx whose Status says `retry: true`, or says nothing, is retried.
#[tokio::test]
async fn a_5xx_saying_retry_true_or_nothing_is_retried() {
    for retry in [Some(true), None] {
        let body = fixture();
        let deckhand = TestServer::start(move |_, n| match n {
            0 => deckhand_status(
                500,
                "Internal Server Error",
                "OperationalError",
                "database is locked",
                retry,
            ),
            _ => Reply::ok(body.clone()),
        })
        .await;
        let document = resolver(&config(serde_json::json!({ "token": TOKEN })))
            .fetch_uri(&deckhand_uri(&deckhand, "/42"))
            .await
            .unwrap_or_else(|e| panic!("retry: {retry:?}: {e}"));
        assert_eq!(document.bytes, fixture());
        assert_eq!(deckhand.hits(), 2, "retry: {retry:?}");
    }
}

/// A Status message that quotes the token or the password back is put in the error without
/// them.
#[tokio::test]
async fn deckhands_message_never_carries_a_secret() {
    let deckhand = TestServer::start(|request, _| {
        let token = request
            .header("x-auth-token")
            .unwrap_or_default()
            .to_owned();
        deckhand_status(
            403,
            "Forbidden",
            "HTTPForbidden",
            &format!("token {token} is not allowed; password {PASSWORD}"),
            Some(false),
        )
    })
    .await;
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    for (section, secrets) in [
        (serde_json::json!({ "token": TOKEN }), vec![TOKEN]),
        (keystone_section(&keystone), vec!["tok-1", PASSWORD]),
    ] {
        let error = resolver(&config(section))
            .fetch_uri(&deckhand_uri(&deckhand, "/42"))
            .await
            .unwrap_err();
        let text = all_text(&error);
        assert!(text.contains("token *** is not allowed"), "{text}");
        for secret in secrets {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
    }
}

/// Item 6: Retry-After from Deckhand is honoured, through the shared fetcher.
#[tokio::test]
async fn deckhand_retry_after_is_honoured() {
    let body = fixture();
    let deckhand = TestServer::start(move |_, n| match n {
        0 => Reply::status(503).header("Retry-After", "1"),
        _ => Reply::ok(body.clone()),
    })
    .await;
    let started = Instant::now();
    resolver(&config(serde_json::json!({})))
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(deckhand.hits(), 2);
}

/// Item 6: rendered documents are cached for `cache_ttl`, keyed by the reference.
#[tokio::test]
async fn deckhand_documents_are_cached() {
    let deckhand = fake_deckhand(&[TOKEN]).await;
    let mut config = config(serde_json::json!({ "token": TOKEN }));
    config.cache_ttl = Duration::from_secs(60);
    let resolver = resolver(&config);
    for _ in 0..3 {
        let document = resolver
            .fetch_uri(&deckhand_uri(&deckhand, "/42"))
            .await
            .unwrap();
        assert_eq!(document.bytes, fixture());
    }
    assert_eq!(deckhand.hits(), 1);
}

/// Item 6: the shared client trusts `ca_bundle`, and a certificate that does not verify is a
/// permanent error, not retried.
#[tokio::test]
async fn tls_is_verified_against_the_ca_bundle() {
    let pki = TestPki::generate();
    let body = fixture();
    let deckhand =
        TestServer::start_tls(pki.acceptor.clone(), move |_, _| Reply::ok(body.clone())).await;
    let uri = deckhand_uri(&deckhand, "/42");

    let error = resolver(&config(serde_json::json!({})))
        .fetch_uri(&uri)
        .await
        .unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("TLS"), "{error}");
    assert!(!error.to_string().contains("attempts"), "{error}");

    let dir = std::env::temp_dir().join(format!("drydock-deckhand-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let mut trusting = config(serde_json::json!({}));
    trusting.ca_bundle = Some(ca);
    let document = resolver(&trusting).fetch_uri(&uri).await.unwrap();
    assert_eq!(document.bytes, fixture());
    std::fs::remove_dir_all(dir).unwrap();
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
    assert_eq!(deckhand.hits(), 1, "a document too large is not retried");
}

#[tokio::test]
async fn bad_references_are_invalid_input() {
    let resolver = resolver(&config(serde_json::json!({})));
    for uri in [
        "deckhand+https://deckhand:8443/",
        "deckhand+https://deckhand:8443/a/b",
        "deckhand+https://deckhand:8443/1/2",
        "deckhand+https://deckhand:8443/not-a-revision",
        "deckhand+https://deckhand:8443/api/v1.0/revisions/4/tags",
        "deckhand+https://user:pw@deckhand:8443/42",
        "promenade+https://promenade:80/",
        "promenade+https://user:pw@promenade:80/api/v1.0/join-scripts",
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

/// Item 5: `promenade+http(s)://` is registered by this crate, through `inventory` alone.
#[test]
fn promenade_schemes_are_registered_with_deckhands() {
    let resolver = DesignResolver::from_registry(&DesignConfig::default()).unwrap();
    let drivers = resolver.drivers();
    for scheme in [
        "deckhand+http",
        "deckhand+https",
        "promenade+http",
        "promenade+https",
    ] {
        assert!(
            drivers.contains(&(scheme, "drydock-design-deckhand")),
            "{scheme}: {drivers:?}"
        );
    }
}

/// Item 5: the document comes back from the Promenade URL, path and query as written, with
/// the token sent.
#[tokio::test]
async fn promenade_resource_comes_back_with_the_token() {
    let promenade = fake_promenade(&[TOKEN]).await;
    let document = resolver(&config(serde_json::json!({ "token": TOKEN })))
        .fetch_uri(&promenade_uri(&promenade, JOIN))
        .await
        .unwrap();
    assert_eq!(document.bytes, SCRIPT);
    assert_eq!(document.content_type.as_deref(), Some("text/x-shellscript"));
    assert_eq!(document.source, promenade.url(JOIN));
    let request = &promenade.requests()[0];
    assert_eq!(request.path, JOIN);
    assert_eq!(request.header("x-auth-token"), Some(TOKEN));
}

/// Item 5: one Keystone token for both services: fetched once, renewed once when Promenade
/// refuses it, and the renewed one used for Deckhand too.
#[tokio::test]
async fn deckhand_and_promenade_share_one_keystone_token() {
    let keystone = fake_keystone(chrono::Duration::hours(1)).await;
    let deckhand = fake_deckhand(&["tok-1", "tok-2"]).await;
    let promenade = fake_promenade(&["tok-1", "tok-2"]).await;
    let resolver = resolver(&config(keystone_section(&keystone)));
    resolver
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap();
    let document = resolver
        .fetch_uri(&promenade_uri(&promenade, JOIN))
        .await
        .unwrap();
    assert_eq!(document.bytes, SCRIPT);
    assert_eq!(keystone.hits(), 1, "one token for both services");
    assert_eq!(
        promenade.requests()[0].header("x-auth-token"),
        Some("tok-1")
    );

    // Promenade's token revoked: a renewal on its 401, which Deckhand then gets too.
    let revoking = fake_promenade(&["tok-2"]).await;
    resolver
        .fetch_uri(&promenade_uri(&revoking, JOIN))
        .await
        .unwrap();
    resolver
        .fetch_uri(&deckhand_uri(&deckhand, "/42"))
        .await
        .unwrap();
    assert_eq!(keystone.hits(), 2);
    assert_eq!(deckhand.requests()[1].header("x-auth-token"), Some("tok-2"));
}

/// Item 5: Promenade's JSON Status message is in the error.
#[tokio::test]
async fn promenade_error_message_is_in_the_error() {
    let promenade = fake_promenade(&[TOKEN]).await;
    let error = resolver(&config(serde_json::json!({ "token": TOKEN })))
        .fetch_uri(&promenade_uri(
            &promenade,
            "/api/v1.0/join-scripts?hostname=n1",
        ))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(
            "HTTP status 400 Bad Request: promenade says: Missing required parameter \"ip\""
        ),
        "{text}"
    );
    assert!(!error.is_retryable());
    assert_eq!(promenade.hits(), 1);
}
