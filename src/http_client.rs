//! The one HTTP client of the function, built at init and shared by the Memfault client and the
//! quarantine queue, so that consecutive requests reuse keep-alive connections instead of paying a
//! TCP and TLS handshake each.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use thiserror::Error;

/// Idle connections are closed before common load balancer idle timeouts (60 s) would close them
/// under us. A container frozen between invocations can still come back to a dead connection:
/// `MemfaultClient::upload` retries that case at once on a fresh one.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub const USER_AGENT_VALUE: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Error)]
pub enum ClientInitError {
    #[error(
        "cannot load trusted CA certificates for {url} (set SSL_CERT_FILE to a PEM bundle): {source}"
    )]
    TrustStore { url: String, source: std::io::Error },
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// How the client connects: what the configuration says of it.
pub(crate) struct ClientSettings<'a> {
    /// Every URL the client will be asked for; only an https one needs the CA store, and reading
    /// it costs a few milliseconds of init.
    pub(crate) destinations: &'a [String],
    pub(crate) connect_timeout: Duration,
    /// Idle connections kept per host: one per upload that can run at once.
    pub(crate) idle_per_host: usize,
}

pub(crate) fn build(settings: &ClientSettings<'_>) -> Result<HttpClient, ClientInitError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let https_url = settings
        .destinations
        .iter()
        .find(|url| url.starts_with("https:"))
        .cloned();
    let roots = match https_url {
        Some(url) => {
            trusted_roots().map_err(|source| ClientInitError::TrustStore { url, source })?
        }
        None => rustls::RootCertStore::empty(),
    };
    let tls = tls.with_root_certificates(roots).with_no_client_auth();

    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(settings.connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(settings.idle_per_host)
        .build(connector))
}

/// The CA certificates an https destination is checked against. `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`, when set, name them, as for OpenSSL. Otherwise the platform's bundle file
/// alone: the platform's certificate directory holds the same certificates again (one file each
/// on Debian, the bundle itself on Amazon Linux), and parsing them twice was init's costliest step.
fn trusted_roots() -> Result<rustls::RootCertStore, std::io::Error> {
    let loaded = match openssl_probe::probe().cert_file {
        Some(bundle) if !openssl_probe::has_ssl_cert_env_vars() => {
            rustls_native_certs::load_certs_from_paths(Some(&bundle), None)
        }
        _ => rustls_native_certs::load_native_certs(),
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no CA certificates found ({:?})", loaded.errors),
        ));
    }
    Ok(roots)
}

/// Enough of an error answer's body to say what the server objected to; the rest is not shown.
pub(crate) const ERROR_BODY_SHOWN: usize = 300;

/// An error answer's body as a log line or an error message shows it: trimmed, on one line, and
/// cut after [`ERROR_BODY_SHOWN`] characters with an ellipsis. Scrub secrets out before this,
/// so that no part of one survives a cut.
pub(crate) fn shown_body(text: &str) -> String {
    let text = text.trim();
    let mut shown: String = text
        .chars()
        .take(ERROR_BODY_SHOWN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > ERROR_BODY_SHOWN {
        shown.push('…');
    }
    shown
}

/// hyper's errors say little at the top ("client error (Connect)"); the cause is further down.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
