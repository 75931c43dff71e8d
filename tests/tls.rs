//! The https path: CA trust through SSL_CERT_FILE, and a TLS upstream on loopback.
//!
//! One test function only: it sets process environment variables, which must not race with
//! other tests reading them.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use memfault_chunk_proxy::ClientInitError;
use memfault_chunk_proxy::{Forwarder, Response};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

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

#[test]
fn https_upstream_is_trusted_through_ssl_cert_file() {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let scratch = std::env::temp_dir().join(format!("chunk-proxy-tls-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let bundle = scratch.join("ca.pem");
    std::fs::write(&bundle, certified.cert.pem()).unwrap();
    let no_certificates = scratch.join("empty.pem");
    std::fs::write(&no_certificates, "").unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (port, mut received) = tls_upstream(&certified).await;
        let url = format!("https://localhost:{port}");

        // SAFETY: this test binary runs this one test, and nothing else reads the environment
        // while it is being changed. SSL_CERT_DIR would add the machine's CAs to the file's.
        unsafe {
            std::env::remove_var("SSL_CERT_DIR");
            std::env::set_var("SSL_CERT_FILE", &no_certificates);
        }
        let error = Forwarder::new(config_for(&url))
            .err()
            .expect("no CA, no client");
        assert!(
            matches!(error, ClientInitError::TrustStore { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("SSL_CERT_FILE") && message.contains(&url),
            "{message}"
        );

        // SAFETY: as above.
        unsafe { std::env::set_var("SSL_CERT_FILE", &bundle) };
        let forwarder = Forwarder::new(config_for(&url)).expect("the bundle is trusted");
        let result = invoke(
            &forwarder,
            sample_event("heartbeat.json"),
            Duration::from_secs(10),
        )
        .await;
        let Ok(Response::Delivered(delivered)) = result else {
            panic!("expected a delivery over TLS, got {result:?}");
        };
        assert_eq!(delivered.status, 202);
        let (path, body) = received.recv().await.unwrap();
        assert_eq!(path, "/api/v0/chunks/TESTSERIAL");
        assert_eq!(body, sample_payload("heartbeat.json"));
    });
    std::fs::remove_dir_all(&scratch).unwrap();
}
