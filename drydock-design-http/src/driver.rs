//! The `http://` and `https://` driver: one fetch with its retries, deadline, size limit and
//! cache.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use drydock_state_core::{
    DesignConfig, DesignDocument, DesignDriver, DesignRef, Error, FetchOptions, Result,
};
use percent_encoding::percent_decode_str;
use tokio::time::Instant;

use crate::cache::DocumentCache;
use crate::client::build_client;
use crate::retry::{after_attempts, backoff, status_failure, transport_failure, Failure};
use crate::SCHEMES;

/// Fetches design documents over HTTP(S). Cheap to share: clone the `Arc` it is built into.
#[derive(Debug)]
pub struct HttpDriver {
    client: reqwest::Client,
    retries: u32,
    retry_backoff: Duration,
    cache: DocumentCache,
}

impl HttpDriver {
    /// A driver configured from `[design]`: see [`build_client`] for the client, and
    /// `retries`, `retry_backoff` and `cache_ttl` for the rest.
    pub fn new(config: &DesignConfig) -> Result<Self> {
        Ok(Self::with_client(build_client(config)?, config))
    }

    /// A driver over a client of your own; retries and cache still come from `config`.
    pub fn with_client(client: reqwest::Client, config: &DesignConfig) -> Self {
        HttpDriver {
            client,
            retries: config.retries,
            retry_backoff: config.retry_backoff,
            cache: DocumentCache::new(config.cache_ttl),
        }
    }

    /// Attempts until success, a permanent failure, `retries` exhausted or the deadline.
    async fn fetch_with_retries(
        &self,
        design_ref: &DesignRef,
        target: &Target,
        options: &FetchOptions,
    ) -> Result<DesignDocument> {
        let deadline = Instant::now() + options.deadline;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = tokio::time::timeout_at(
                deadline,
                self.attempt(design_ref, target, options.max_size),
            )
            .await;
            let failure = match outcome {
                Ok(Ok(document)) => return Ok(document),
                Ok(Err(failure)) => failure,
                Err(_elapsed) => {
                    let error = design_ref.fetch_error(
                        format!(
                            "no complete answer within the total timeout of {:?}",
                            options.deadline
                        ),
                        true,
                    );
                    return Err(after_attempts(error, attempt));
                }
            };
            if !failure.error.is_retryable() || attempt > self.retries {
                return Err(after_attempts(failure.error, attempt));
            }
            let delay = failure
                .retry_after
                .unwrap_or_else(|| backoff(self.retry_backoff, attempt));
            if Instant::now() + delay >= deadline {
                // Waiting would only reach the deadline: report what actually went wrong.
                return Err(after_attempts(failure.error, attempt));
            }
            tracing::warn!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "design fetch failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One request, its status checked and its body read within the size limit.
    async fn attempt(
        &self,
        design_ref: &DesignRef,
        target: &Target,
        max_size: u64,
    ) -> std::result::Result<DesignDocument, Failure> {
        let mut request = self.client.get(target.url.clone());
        if let Some((user, password)) = &target.basic_auth {
            request = request.basic_auth(user, password.as_ref());
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_failure(design_ref, e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_failure(design_ref, status, response.headers()));
        }
        let mut source = response.url().clone();
        let _ = source.set_username("");
        let _ = source.set_password(None);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_body(design_ref, response, max_size).await?;
        tracing::debug!(bytes = bytes.len(), %status, "design document received");
        Ok(DesignDocument {
            bytes,
            content_type,
            source: source.to_string(),
        })
    }
}

#[async_trait]
impl DesignDriver for HttpDriver {
    fn schemes(&self) -> &'static [&'static str] {
        SCHEMES
    }

    #[tracing::instrument(skip_all, fields(design_ref = %design_ref.without_credentials()))]
    async fn fetch(
        &self,
        design_ref: &DesignRef,
        options: &FetchOptions,
    ) -> Result<DesignDocument> {
        let key = design_ref.without_credentials();
        if let Some(document) = self.cache.get(&key) {
            tracing::debug!("design served from cache");
            return Ok(document);
        }
        let target = Target::new(design_ref)?;
        let document = self
            .fetch_with_retries(design_ref, &target, options)
            .await?;
        self.cache.insert(key, document.clone());
        Ok(document)
    }
}

/// What is actually requested: the URL without user info, and the user info as basic auth.
struct Target {
    url: reqwest::Url,
    basic_auth: Option<(String, Option<String>)>,
}

impl Target {
    fn new(design_ref: &DesignRef) -> Result<Self> {
        let url = design_ref.url();
        if !SCHEMES.contains(&url.scheme()) {
            return Err(Error::invalid(
                "design_ref",
                format!("{design_ref}: the http driver serves only http:// and https://"),
            ));
        }
        let basic_auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |text: &str| -> Result<String> {
                percent_decode_str(text)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| {
                        Error::invalid(
                            "design_ref",
                            format!("{design_ref}: user info is not valid UTF-8"),
                        )
                    })
            };
            Some((
                decode(url.username())?,
                url.password().map(decode).transpose()?,
            ))
        };
        let mut url = url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(Target { url, basic_auth })
    }
}

/// Reads the body chunk by chunk, refusing it as soon as it is known to be too large.
async fn read_body(
    design_ref: &DesignRef,
    mut response: reqwest::Response,
    max_size: u64,
) -> std::result::Result<Bytes, Failure> {
    let declared = response.content_length();
    if let Some(declared) = declared {
        if declared > max_size {
            return Err(too_large(design_ref, declared, max_size).into());
        }
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_failure(design_ref, e))?
    {
        let size = (buffer.len() + chunk.len()) as u64;
        if size > max_size {
            return Err(too_large(design_ref, size, max_size).into());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

fn too_large(design_ref: &DesignRef, size: u64, limit: u64) -> Error {
    design_ref.fetch_error(
        format!("document of {size} bytes or more exceeds the limit of {limit} bytes"),
        false,
    )
}
