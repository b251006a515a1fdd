//! Keystone v3 password authentication, and the token it hands out, reused until it expires.

use chrono::{DateTime, Utc};
use drydock_state_core::{redact_uri, DesignRef, Error, Result};
use serde::Deserialize;

use crate::config::KeystoneConfig;
use crate::driver::{read_limited, transport_error};

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
        let request = serde_json::json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": c.username,
                            "domain": { "name": c.user_domain_name },
                            "password": c.password,
                        }
                    }
                },
                "scope": {
                    "project": {
                        "name": c.project_name,
                        "domain": { "name": c.project_domain_name },
                    }
                }
            }
        });
        tracing::debug!(auth_url = %redact_uri(self.tokens_url.as_str()), user = %c.username, "authenticating with keystone");
        let context = format!("keystone at {}", redact_uri(self.tokens_url.as_str()));
        let response = client
            .post(self.tokens_url.clone())
            .json(&request)
            .send()
            .await
            .map_err(|e| transport_error(design_ref, &context, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(design_ref.fetch_error(
                format!("{context} refused authentication: HTTP status {status}"),
                status.is_server_error(),
            ));
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
        let body = read_limited(design_ref, &context, response, MAX_TOKEN_RESPONSE).await?;
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
}
