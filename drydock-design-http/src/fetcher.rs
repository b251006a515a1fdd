//! The shared fetcher: what every HTTP-based design driver needs, written once. The client
//! (timeouts, redirects, CA bundle, the TLS verification switch), the size limit enforced
//! while the body streams in, the classification of every failure as retryable or not,
//! retries with a capped, jittered backoff and `Retry-After`, the total deadline, and the
//! document cache.
//!
//! A driver describes its request with an [`Exchange`] and calls [`Fetcher::fetch`]; for
//! side requests of its own (a token from an identity service, say) it uses
//! [`Fetcher::client`] with [`send`], [`read_body`] and [`status_error`], so that those fail
//! the same way.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use drydock_state_core::{DesignConfig, DesignDocument, DesignRef, Error, FetchOptions, Result};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::time::Instant;

use crate::cache::DocumentCache;
use crate::client::build_client;
use crate::retry::{self, after_attempts, backoff, status_failure, Failure};

/// The longest wait between two attempts unless [`Fetcher::with_max_backoff`] says otherwise.
/// A server's `Retry-After` is not capped (only the total deadline bounds it).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How much of an error answer's body is read and handed to [`Exchange::error_detail`].
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// What a server's error body said, as an [`Exchange`] reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The server's explanation, appended to the error's reason. It must not contain a
    /// secret: an exchange that sent credentials removes them before returning it.
    pub message: Option<String>,
    /// The server's own retry advice. `Some(false)` makes a transient status (408, 429, 5xx)
    /// permanent; `Some(true)` or `None` leaves the status's classification alone (a 4xx
    /// stays permanent whatever the body says).
    pub retry: Option<bool>,
}

/// One kind of request a driver makes through [`Fetcher::fetch`].
///
/// Only [`Exchange::request`] is required; the defaults suit a plain `GET`.
#[async_trait]
pub trait Exchange: Send + Sync {
    /// The request of one attempt, built on `client`. It is called again for every attempt
    /// (and after a 401 that [`Exchange::unauthorized`] answered with `true`), so fresh
    /// credentials can be put in each time. An error ends the attempt with that error, which
    /// is retried when it is retryable.
    async fn request(&self, client: &reqwest::Client) -> Result<reqwest::RequestBuilder>;

    /// The server answered 401. Return `true` after renewing the credentials to have the
    /// request sent again at once (this does not count as a retry). Called at most once per
    /// fetch; by default `false`, and the 401 is a permanent error.
    async fn unauthorized(&self) -> bool {
        false
    }

    /// Reads the server's explanation from an error answer: its status, headers and the
    /// first [`MAX_ERROR_BODY`] bytes of its body. By default nothing is read from it.
    fn error_detail(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ErrorDetail {
        let _ = (status, headers, body);
        ErrorDetail::default()
    }

    /// The key the document is cached under, or `None` not to cache it. By default the
    /// reference without its credentials.
    fn cache_key(&self, design_ref: &DesignRef) -> Option<String> {
        Some(design_ref.without_credentials())
    }
}

/// Fetches documents over HTTP(S) for any driver: build one per driver with
/// [`Fetcher::new`], describe each request with an [`Exchange`], call [`Fetcher::fetch`].
pub struct Fetcher {
    client: reqwest::Client,
    retries: u32,
    retry_backoff: Duration,
    max_backoff: Duration,
    cache: DocumentCache,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("retries", &self.retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("cache_ttl", &self.cache.ttl())
            .finish()
    }
}

impl Fetcher {
    /// A fetcher configured from `[design]`: the client from [`build_client`] (timeouts,
    /// redirects, `ca_bundle`, `danger_accept_invalid_certs`), `retries` and `retry_backoff`
    /// (capped at [`DEFAULT_MAX_BACKOFF`]), and a cache of `cache_ttl`.
    pub fn new(config: &DesignConfig) -> Result<Self> {
        Ok(Self::with_client(build_client(config)?, config))
    }

    /// A fetcher over a client of your own; retries and cache still come from `config`.
    pub fn with_client(client: reqwest::Client, config: &DesignConfig) -> Self {
        Fetcher {
            client,
            retries: config.retries,
            retry_backoff: config.retry_backoff,
            max_backoff: DEFAULT_MAX_BACKOFF,
            cache: DocumentCache::new(config.cache_ttl),
        }
    }

    /// Caps the backoff between two attempts at `cap` (jitter included).
    pub fn with_max_backoff(mut self, cap: Duration) -> Self {
        self.max_backoff = cap;
        self
    }

    /// The client, for a driver's side requests (see [`send`]).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Fetches the document `exchange` asks for: from the cache if a copy younger than
    /// `cache_ttl` is there, else with up to `retries` more attempts after a retryable
    /// failure, all within `options.deadline`, the body limited to `options.max_size`.
    /// A non-2xx answer is an [`Error::DesignFetch`] naming the status and what
    /// [`Exchange::error_detail`] read; the last error is returned with the attempt count.
    pub async fn fetch<E: Exchange + ?Sized>(
        &self,
        design_ref: &DesignRef,
        options: &FetchOptions,
        exchange: &E,
    ) -> Result<DesignDocument> {
        let key = exchange.cache_key(design_ref);
        if let Some(document) = key.as_deref().and_then(|key| self.cache.get(key)) {
            tracing::debug!("design served from cache");
            return Ok(document);
        }
        let document = self
            .fetch_with_retries(design_ref, options, exchange)
            .await?;
        if let Some(key) = key {
            self.cache.insert(key, document.clone());
        }
        Ok(document)
    }

    /// Attempts until success, a permanent failure, `retries` exhausted or the deadline.
    async fn fetch_with_retries<E: Exchange + ?Sized>(
        &self,
        design_ref: &DesignRef,
        options: &FetchOptions,
        exchange: &E,
    ) -> Result<DesignDocument> {
        let deadline = Instant::now() + options.deadline;
        let mut reauthenticated = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = tokio::time::timeout_at(
                deadline,
                self.attempt(design_ref, exchange, options.max_size, &mut reauthenticated),
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
                .unwrap_or_else(|| backoff(self.retry_backoff, attempt, self.max_backoff));
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

    /// One attempt: the request sent (twice after a 401 the exchange recovers from), its
    /// status checked and its body read within the size limit.
    async fn attempt<E: Exchange + ?Sized>(
        &self,
        design_ref: &DesignRef,
        exchange: &E,
        max_size: u64,
        reauthenticated: &mut bool,
    ) -> std::result::Result<DesignDocument, Failure> {
        let response = loop {
            let request = exchange.request(&self.client).await?;
            let response = send(design_ref, None, request).await?;
            if response.status() == StatusCode::UNAUTHORIZED && !*reauthenticated {
                *reauthenticated = true;
                if exchange.unauthorized().await {
                    tracing::debug!("credentials refused; sending again with fresh ones");
                    continue;
                }
            }
            break response;
        };
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = read_error_body(response).await;
            let detail = exchange.error_detail(status, &headers, &body);
            return Err(status_failure(design_ref, status, &headers, &detail));
        }
        let mut source = response.url().clone();
        let _ = source.set_username("");
        let _ = source.set_password(None);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_body(design_ref, None, response, max_size).await?;
        tracing::debug!(bytes = bytes.len(), %status, "design document received");
        Ok(DesignDocument {
            bytes,
            content_type,
            source: source.to_string(),
        })
    }
}

/// Sends `request`, a transport failure becoming an [`Error::DesignFetch`] classified as
/// [`transport_error`] does; the reason starts with `context` (e.g. which service) if given.
pub async fn send(
    design_ref: &DesignRef,
    context: Option<&str>,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response> {
    request
        .send()
        .await
        .map_err(|e| transport_error(design_ref, context, e))
}

/// Classifies a transport failure: timeouts, refused connections and interrupted bodies are
/// retryable; a certificate or handshake rustls rejects, a failed redirect and an invalid
/// request are not. The error keeps no URL (a redirect target might hold credentials).
pub fn transport_error(
    design_ref: &DesignRef,
    context: Option<&str>,
    error: reqwest::Error,
) -> Error {
    retry::transport_error(design_ref, context, error)
}

/// The error for a non-2xx answer: `[context: ]HTTP status <status>[: <message>]`, retryable
/// for 408, 429 and 5xx unless `detail.retry` is `Some(false)`.
pub fn status_error(
    design_ref: &DesignRef,
    context: Option<&str>,
    status: StatusCode,
    detail: &ErrorDetail,
) -> Error {
    retry::status_error(design_ref, context, status, detail)
}

/// Reads a body chunk by chunk, refusing it (permanently) as soon as it is known to exceed
/// `max_size`: a `Content-Length` above it is refused before anything is read.
pub async fn read_body(
    design_ref: &DesignRef,
    context: Option<&str>,
    mut response: reqwest::Response,
    max_size: u64,
) -> Result<Bytes> {
    let too_large = |size: u64| {
        let what =
            format!("document of {size} bytes or more exceeds the limit of {max_size} bytes");
        design_ref.fetch_error(
            match context {
                Some(context) => format!("{context}: {what}"),
                None => what,
            },
            false,
        )
    };
    let declared = response.content_length();
    if let Some(declared) = declared.filter(|d| *d > max_size) {
        return Err(too_large(declared));
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(max_size) as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(design_ref, context, e))?
    {
        let size = (buffer.len() + chunk.len()) as u64;
        if size > max_size {
            return Err(too_large(size));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// The first [`MAX_ERROR_BODY`] bytes of an error answer's body; whatever arrived if reading
/// fails (an error answer is reported by its status whether or not its body can be read).
pub async fn read_error_body(mut response: reqwest::Response) -> Bytes {
    let mut buffer = BytesMut::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY - buffer.len();
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buffer.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    buffer.freeze()
}
