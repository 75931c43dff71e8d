//! Upstreams that misbehave: answers whose body never arrives (a raw socket server, since an
//! HTTP mock cannot stall a body), absurd `Retry-After` values, and silence up to the deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use memfault_chunk_proxy::MIN_DEADLINE_MARGIN;
use memfault_chunk_proxy::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::ResponseTemplate;

/// The start of the first answer: a head announcing a body of a million bytes.
const ACCEPTED_HEAD: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Length: 1000000\r\n\r\n";

/// What follows the start of the first answer.
#[derive(Clone, Copy)]
enum Body {
    /// Not one byte.
    Silence,
    /// One byte every 10 ms, so the whole body would take almost three hours.
    Trickle,
}

/// A raw HTTP/1.1 server: its first answer starts with `first` and never completes, every later
/// one is a plain 202. Counts connections and requests.
struct StallingServer {
    uri: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl StallingServer {
    async fn start(first: &'static [u8], body: Body) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (opened, answered) = (Arc::clone(&connections), Arc::clone(&requests));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                opened.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, Arc::clone(&answered), first, body));
            }
        });
        Self {
            uri,
            connections,
            requests,
        }
    }
}

async fn serve(
    mut socket: TcpStream,
    requests: Arc<AtomicUsize>,
    first: &'static [u8],
    body: Body,
) {
    while read_request(&mut socket).await {
        if requests.fetch_add(1, Ordering::SeqCst) > 0 {
            let answer = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
            if socket.write_all(answer).await.is_err() {
                return;
            }
            continue;
        }
        if socket.write_all(first).await.is_err() {
            return;
        }
        loop {
            match body {
                Body::Silence => tokio::time::sleep(Duration::from_secs(3600)).await,
                Body::Trickle => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if socket.write_all(b"x").await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Reads one request, head and `Content-Length` body; false once the client has gone.
async fn read_request(socket: &mut TcpStream) -> bool {
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                return true;
            }
        }
        match socket.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

async fn a_success_whose_body_never_completes_is_one_delivery(body: Body) {
    let server = StallingServer::start(ACCEPTED_HEAD, body).await;
    let forwarder = forwarder(config_for(&server.uri));
    let started = Instant::now();

    let first = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    let elapsed = started.elapsed();
    match first {
        Ok(Response::Delivered(delivered)) => {
            assert_eq!((delivered.status, delivered.attempts), (202, 1));
        }
        other => panic!("expected a delivery, got {other:?}"),
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "sent again");
    // Well within the 5 s request timeout: the status decided, not a wait for the body.
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // The stalled connection was not handed back to the pool: the next upload gets a new one.
    let second = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;
    assert!(matches!(second, Ok(Response::Delivered(_))), "{second:?}");
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_success_whose_body_stalls_is_delivered_once() {
    a_success_whose_body_never_completes_is_one_delivery(Body::Silence).await;
}

#[tokio::test]
async fn a_success_whose_body_trickles_is_delivered_once() {
    a_success_whose_body_never_completes_is_one_delivery(Body::Trickle).await;
}

#[tokio::test]
async fn a_refusal_whose_body_stalls_is_a_refusal() {
    let first = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1000000\r\n\r\nInvalid project key";
    let server = StallingServer::start(first, Body::Silence).await;
    let forwarder = forwarder(config_for(&server.uri));
    let started = Instant::now();

    let result = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    let error = result.expect_err("a refusal");
    assert_eq!(error.error_type(), "Retryable.UpstreamConfiguration");
    assert!(
        error.to_string().ends_with("): Invalid project key"),
        "{error}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_too_large_to_represent_ends_the_upload_at_once() {
    let server = server_answering(
        ResponseTemplate::new(503).insert_header("Retry-After", "9".repeat(30).as_str()),
    )
    .await;
    let forwarder = forwarder(config_for(&server.uri()));
    let started = Instant::now();

    let result = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    let error = result.expect_err("no delivery");
    assert_eq!(error.error_type(), "Retryable.UpstreamServerError");
    assert!(
        error.to_string().contains("past the invocation deadline"),
        "{error}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_smallest_margin_leaves_time_to_answer_before_the_deadline() {
    let server =
        server_answering(ResponseTemplate::new(202).set_delay(Duration::from_secs(60))).await;
    let mut config = config_for(&server.uri());
    config.set("MEMFAULT_REQUEST_TIMEOUT_MS", 30_000);
    config.set(
        "MEMFAULT_DEADLINE_MARGIN_MS",
        MIN_DEADLINE_MARGIN.as_millis(),
    );
    let forwarder = forwarder(config);
    let budget = Duration::from_millis(1_000);
    let started = Instant::now();

    let result = invoke(&forwarder, sample_event("heartbeat.json"), budget).await;

    let elapsed = started.elapsed();
    assert_eq!(
        result.expect_err("no delivery").error_type(),
        "Retryable.UpstreamTimeout"
    );
    assert!(
        elapsed + MIN_DEADLINE_MARGIN / 2 < budget,
        "answered {elapsed:?} into a budget of {budget:?}"
    );
}
