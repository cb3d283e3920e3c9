//! Builds an object store client for a [`Location`], with credentials and endpoint from the
//! provider's standard environment variables and Weir's timeouts and retry bounds.
//!
//! # Environment
//! - S3: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (or
//!   `AWS_DEFAULT_REGION`; `us-east-1` when neither is set), `AWS_ENDPOINT_URL` /
//!   `AWS_ENDPOINT` for an S3-compatible server (an `http://` endpoint allows plain HTTP),
//!   and every other variable `object_store`'s `AmazonS3Builder::from_env` reads.
//! - GCS: `GOOGLE_SERVICE_ACCOUNT` (or `GOOGLE_APPLICATION_CREDENTIALS`) and the rest of
//!   `GoogleCloudStorageBuilder::from_env`.
//! - Azure: `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY` and the rest of
//!   `MicrosoftAzureBuilder::from_env`.
//! - Weir: `WEIR_OBJECT_STORE_TIMEOUT_MS` (one request, default 30 000),
//!   `WEIR_OBJECT_STORE_RETRIES` (retries of one request, default 8) and
//!   `WEIR_OBJECT_STORE_RETRY_TIMEOUT_MS` (all retries of one request, default 60 000).
//!
//! # Retries
//! Every request is retried by the client on timeouts, connection errors, 5xx and 429/503
//! (S3's SlowDown), with exponential backoff from 100 ms to 5 s, at most the configured
//! number of times and for at most the configured time; then the error reaches Weir, which
//! fails the checkpoint (the job keeps running) or retries the restore.

use crate::location::{Location, Provider};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;
use weir_engine::{Error, Result};

/// Timeouts and retry bounds of an object store client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// The timeout of one request.
    pub request_timeout: Duration,
    /// Retries of one request after a transient failure.
    pub max_retries: usize,
    /// The time after which a request is no longer retried.
    pub retry_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            request_timeout: Duration::from_secs(30),
            max_retries: 8,
            retry_timeout: Duration::from_secs(60),
        }
    }
}

impl ClientSettings {
    /// The defaults, overridden by the `WEIR_OBJECT_STORE_*` environment variables.
    ///
    /// # Errors
    /// `Config` naming a variable that is not a number.
    pub fn from_env() -> Result<Self> {
        let mut s = ClientSettings::default();
        if let Some(ms) = env_u64("WEIR_OBJECT_STORE_TIMEOUT_MS")? {
            s.request_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = env_u64("WEIR_OBJECT_STORE_RETRIES")? {
            s.max_retries = n as usize;
        }
        if let Some(ms) = env_u64("WEIR_OBJECT_STORE_RETRY_TIMEOUT_MS")? {
            s.retry_timeout = Duration::from_millis(ms);
        }
        Ok(s)
    }

    pub(crate) fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    pub(crate) fn client(&self, allow_http: bool) -> ClientOptions {
        ClientOptions::new()
            .with_timeout(self.request_timeout)
            .with_connect_timeout(Duration::from_secs(5).min(self.request_timeout))
            .with_allow_http(allow_http)
    }
}

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::config(format!("{name}={v} is not a whole number"))),
        Err(_) => Ok(None),
    }
}

/// A client for the bucket of `location` (an object location), and the location's prefix.
///
/// # Errors
/// `Config` when the provider's configuration is incomplete (no credentials can be found,
/// a malformed endpoint). Nothing is contacted yet: a missing bucket shows at `validate`.
pub fn connect(location: &Location, settings: &ClientSettings) -> Result<Arc<dyn ObjectStore>> {
    let Location::Object {
        provider, bucket_url, ..
    } = location
    else {
        return Err(Error::internal("connect() called for a local directory"));
    };
    let built: std::result::Result<Arc<dyn ObjectStore>, object_store::Error> = match provider {
        Provider::S3 => {
            let mut b = AmazonS3Builder::from_env().with_url(bucket_url.as_str());
            let endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .ok();
            if let Some(ep) = &endpoint {
                b = b.with_endpoint(ep.as_str());
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
                b = b.with_region("us-east-1");
            }
            let http = endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
            b.with_retry(settings.retry())
                .with_client_options(settings.client(http))
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        }
        Provider::Gcs => GoogleCloudStorageBuilder::from_env()
            .with_url(bucket_url.as_str())
            .with_retry(settings.retry())
            .with_client_options(settings.client(false))
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
        Provider::Azure => MicrosoftAzureBuilder::from_env()
            .with_url(bucket_url.as_str())
            .with_retry(settings.retry())
            .with_client_options(settings.client(false))
            .build()
            .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
    };
    built.map_err(|e| Error::config(format!("checkpoint storage {location} cannot be configured: {e}")).with_source(e))
}
