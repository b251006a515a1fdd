//! Keystone v3 password authentication, and the token it hands out, reused until it expires.

use chrono::{DateTime, Utc};
use drydock_design_http::fetcher::{read_body, read_error_body, send, status_error};
use drydock_design_http::ErrorDetail;
use drydock_state_core::{redact_uri, DesignRef, Error, Result};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::config::KeystoneConfig;
use crate::status;

/// A token is renewed this long before Keystone says it expires, so that it does not expire
/// between the check and Deckhand's.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// Largest token response read; it carries the service catalog, which is rarely above 100 KiB.
const MAX_TOKEN_RESPONSE: u64 = 4 * 1024 * 1024;

/// Gets project-scoped tokens from Keystone and keeps the current one.
pub(crate) struct Keystone {
    config: KeystoneConfig,
    tokens_url: reqwest::Url,
    current: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: String,
    /// `None` when Keystone did not say: the token is used until Deckhand refuses it.
    expires_at: Option<DateTime<Utc>>,
}

impl Token {
    fn is_fresh(&self) -> bool {
        self.expires_at
            .is_none_or(|expires_at| expires_at - EXPIRY_MARGIN > Utc::now())
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    token: TokenBody,
}

#[derive(Deserialize)]
struct TokenBody {
    expires_at: Option<DateTime<Utc>>,
}

impl Keystone {
    pub(crate) fn new(config: KeystoneConfig) -> Result<Self> {
        let base = config.auth_url.trim_end_matches('/');
        // Operators write the endpoint both with and without the version suffix.
        let tokens_url = if base.ends_with("/v3") {
            format!("{base}/auth/tokens")
        } else {
            format!("{base}/v3/auth/tokens")
        };
        let tokens_url = reqwest::Url::parse(&tokens_url).map_err(|_| Error::Config {
            key: "design.drivers.deckhand.keystone.auth_url".into(),
            origin: "configuration".into(),
            reason: "is not an absolute http(s) URL".into(),
        })?;
        Ok(Keystone {
            config,
            tokens_url,
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// The password, for scrubbing server messages.
    pub(crate) fn password(&self) -> &str {
        self.config.password.expose()
    }

    /// The current token, authenticating first if there is none or it is about to expire.
    /// Concurrent callers wait for one authentication instead of each making their own.
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        design_ref: &DesignRef,
    ) -> Result<String> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().filter(|t| t.is_fresh()) {
            return Ok(token.value.clone());
        }
        let token = self.authenticate(client, design_ref).await?;
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }

    /// Drops `rejected` if it is still the current token, so the next call authenticates.
    pub(crate) async fn forget(&self, rejected: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.value == rejected) {
            *current = None;
        }
    }

    async fn authenticate(
        &self,
        client: &reqwest::Client,
        design_ref: &DesignRef,
    ) -> Result<Token> {
        let c = &self.config;
        let mut project = c.project().to_json();
        if let Some(domain) = c.project_domain() {
            project["domain"] = domain.to_json();
        }
        let request = serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": c.username,
                            "domain": c.user_domain().to_json(),
                            "password": c.password.expose(),
                        }
                    }
                },
                "scope": { "project": project }
            }
        });
        tracing::debug!(auth_url = %redact_uri(self.tokens_url.as_str()), user = %c.username, "authenticating with keystone");
        let context = format!("keystone at {}", redact_uri(self.tokens_url.as_str()));
        let response = send(
            design_ref,
            Some(&context),
            client.post(self.tokens_url.clone()).json(&request),
        )
        .await?;
        let status = response.status();
        if !status.is_success() {
            let body = read_error_body(response).await;
            let mut detail = status::error_detail("keystone", &body, &[c.password.expose()]);
            if status == StatusCode::UNAUTHORIZED {
                detail = self.explain_refusal(detail);
            }
            return Err(status_error(design_ref, Some(&context), status, &detail));
        }
        let value = response
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                design_ref.fetch_error(
                    format!("{context} answered without an X-Subject-Token header"),
                    false,
                )
            })?;
        let body = read_body(design_ref, Some(&context), response, MAX_TOKEN_RESPONSE).await?;
        let expires_at = serde_json::from_slice::<TokenResponse>(&body)
            .map(|r| r.token.expires_at)
            .map_err(|e| {
                design_ref.fetch_error(
                    format!("{context} answered with an unreadable token body: {e}"),
                    false,
                )
            })?;
        Ok(Token { value, expires_at })
    }

    /// Keystone says only "requires authentication" for a wrong password, user, domain or
    /// project: say what was asked for, and the usual cause.
    fn explain_refusal(&self, mut detail: ErrorDetail) -> ErrorDetail {
        let c = &self.config;
        let mut what = format!(
            "as user {:?} in the domain with {}, for the project with {}",
            c.username,
            c.user_domain(),
            c.project()
        );
        if let Some(domain) = c.project_domain() {
            what.push_str(&format!(" in the domain with {domain}"));
        }
        what.push_str(
            "; Keystone looks names up case-sensitively (the stock default domain has id \
             \"default\" and name \"Default\")",
        );
        detail.message = Some(match detail.message.take() {
            Some(message) => format!("{message} ({what})"),
            None => what,
        });
        detail
    }
}
