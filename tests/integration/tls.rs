//! The https path: CA trust through SSL_CERT_FILE, and a TLS upstream on loopback.
//!
//! The built binary runs against the mock Runtime API of `binary`, with the variables set on its
//! process: setting them on this one would race with every other test reading the environment.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::binary::{
    INIT_ERROR, answer, lambda_command, runtime_api_serving, runtime_api_taking_init_errors,
};
use crate::support::*;

/// A TLS server for `localhost` that answers 202 and reports each request's path and body.
async fn tls_upstream(
    certified: &rcgen::CertifiedKey<rcgen::KeyPair>,
) -> (u16, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = request.uri().path().to_owned();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let _ = seen.send((path, body.to_vec()));
                        let response = hyper::Response::builder()
                            .status(202)
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, received)
}

/// Writes `pem` to a file of its own in a scratch directory (one per test and process).
fn pem_file(test: &str, pem: &str) -> PathBuf {
    let scratch = std::env::temp_dir().join(format!("chunk-proxy-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let file = scratch.join("ca.pem");
    std::fs::write(&file, pem).unwrap();
    file
}

#[tokio::test]
async fn without_a_trusted_ca_init_fails_naming_ssl_cert_file_and_the_url() {
    let no_certificates = pem_file("tls-untrusted", "");
    // Init reads the CA store before anything connects: no server needed.
    let url = "https://localhost:8443";
    let runtime_api = runtime_api_taking_init_errors(Duration::ZERO).await;

    let output = lambda_command(&runtime_api)
        .env("MEMFAULT_CHUNKS_URL", url)
        .env("SSL_CERT_FILE", &no_certificates)
        .output()
        .unwrap();

    assert!(!output.status.success());
    let requests = runtime_api.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "only the init error, no invocation");
    assert_eq!(requests[0].url.path(), INIT_ERROR);
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["errorType"], "Runtime.ClientInitFailed");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("SSL_CERT_FILE") && message.contains(url),
        "{message}"
    );
    std::fs::remove_dir_all(no_certificates.parent().unwrap()).unwrap();
}

#[tokio::test]
async fn https_upstream_is_trusted_through_ssl_cert_file() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let bundle = pem_file("tls-trusted", &certified.cert.pem());
    let (port, mut received) = tls_upstream(&certified).await;
    let runtime_api = runtime_api_serving(sample_event("heartbeat.json").to_string()).await;

    let mut child = lambda_command(&runtime_api)
        .env("MEMFAULT_CHUNKS_URL", format!("https://localhost:{port}"))
        .env("SSL_CERT_FILE", &bundle)
        .spawn()
        .unwrap();
    let (path, body) = answer(&runtime_api).await;
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(path, "/2018-06-01/runtime/invocation/request-1/response");
    assert_eq!(body["status"], 202, "{body}");
    let (path, body) = received.recv().await.unwrap();
    assert_eq!(path, "/api/v0/chunks/TESTSERIAL");
    assert_eq!(body, sample_payload("heartbeat.json"));
    std::fs::remove_dir_all(bundle.parent().unwrap()).unwrap();
}
