//! The `http://` and `https://` driver: a plain `GET` through the shared [`Fetcher`], basic
//! auth taken from the URI's user info.

use async_trait::async_trait;
use drydock_state_core::{
    DesignConfig, DesignDocument, DesignDriver, DesignRef, Error, FetchOptions, Result,
};
use percent_encoding::percent_decode_str;

use crate::fetcher::{Exchange, Fetcher};
use crate::SCHEMES;

/// Fetches design documents over HTTP(S). Cheap to share: clone the `Arc` it is built into.
#[derive(Debug)]
pub struct HttpDriver {
    fetcher: Fetcher,
}

impl HttpDriver {
    /// A driver configured from `[design]`: see [`Fetcher::new`].
    pub fn new(config: &DesignConfig) -> Result<Self> {
        Ok(HttpDriver {
            fetcher: Fetcher::new(config)?,
        })
    }

    /// A driver over a client of your own; retries and cache still come from `config`.
    pub fn with_client(client: reqwest::Client, config: &DesignConfig) -> Self {
        HttpDriver {
            fetcher: Fetcher::with_client(client, config),
        }
    }
}

#[async_trait]
impl DesignDriver for HttpDriver {
    #[tracing::instrument(skip_all, fields(design_ref = %design_ref.without_credentials()))]
    async fn fetch(
        &self,
        design_ref: &DesignRef,
        options: &FetchOptions,
    ) -> Result<DesignDocument> {
        let target = Target::new(design_ref)?;
        self.fetcher.fetch(design_ref, options, &target).await
    }
}

/// What is actually requested: the URL without user info, and the user info as basic auth.
struct Target {
    url: reqwest::Url,
    basic_auth: Option<(String, Option<String>)>,
}

#[async_trait]
impl Exchange for Target {
    async fn request(&self, client: &reqwest::Client) -> Result<reqwest::RequestBuilder> {
        let mut request = client.get(self.url.clone());
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, password.as_ref());
        }
        Ok(request)
    }
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
