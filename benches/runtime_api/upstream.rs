//! A mock Memfault chunks API: accepts `POST /api/v0/chunks/{serial}` with 202 after an optional
//! delay, and counts what reaches it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode};

use crate::server::{Reply, Server, reply};

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
    chunks: AtomicU64,
    bytes: AtomicU64,
    busy_micros: AtomicU64,
}

/// What the upstream saw, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub connections: u64,
    pub requests: u64,
    /// Chunks: one per single-chunk request, one per part of a multipart request.
    pub chunks: u64,
    /// Request body bytes, multipart framing included.
    pub bytes: u64,
    /// Time spent answering, summed over requests (the simulated delay included).
    pub busy: Duration,
}

pub(crate) struct Upstream {
    server: Server,
    counters: Arc<Counters>,
}

impl Upstream {
    pub(crate) async fn start(delay: Duration) -> Self {
        let counters = Arc::new(Counters::default());
        let on_accept = {
            let counters = Arc::clone(&counters);
            move || {
                counters.connections.fetch_add(1, Ordering::Relaxed);
            }
        };
        let handler = {
            let counters = Arc::clone(&counters);
            move |request| accept(Arc::clone(&counters), delay, request)
        };
        let server = Server::start(on_accept, handler).await;
        Self { server, counters }
    }

    /// The value for `MEMFAULT_CHUNKS_URL`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.server.address())
    }

    pub(crate) fn seen(&self) -> Seen {
        let counters = &self.counters;
        Seen {
            connections: counters.connections.load(Ordering::Relaxed),
            requests: counters.requests.load(Ordering::Relaxed),
            chunks: counters.chunks.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            busy: Duration::from_micros(counters.busy_micros.load(Ordering::Relaxed)),
        }
    }
}

async fn accept(counters: Arc<Counters>, delay: Duration, request: Request<Incoming>) -> Reply {
    let started = Instant::now();
    counters.requests.fetch_add(1, Ordering::Relaxed);
    // Anything but a well-formed upload is answered 400, which the function reports as a failed
    // invocation, which fails the bench.
    if request.method() != Method::POST
        || !request.uri().path().starts_with("/api/v0/chunks/")
        || !request.headers().contains_key("memfault-project-key")
    {
        return reply(
            StatusCode::BAD_REQUEST,
            "expected POST /api/v0/chunks/{serial} with Memfault-Project-Key",
        );
    }
    let boundary = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("multipart/mixed; boundary="))
        .map(str::to_owned);
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return reply(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let chunks = match boundary {
        None => 1,
        Some(boundary) => {
            let delimiter = format!("--{boundary}\r\n");
            let parts = body
                .windows(delimiter.len())
                .filter(|window| *window == delimiter.as_bytes())
                .count();
            if parts == 0 {
                return reply(StatusCode::BAD_REQUEST, "multipart body without parts");
            }
            parts as u64
        }
    };
    counters.chunks.fetch_add(chunks, Ordering::Relaxed);
    counters
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    if !delay.is_zero() {
        // tokio's timer counts whole milliseconds and rounds up, which turns 1 ms into about 2;
        // a sleeping thread from the blocking pool keeps the simulated delay close to what was set.
        tokio::task::spawn_blocking(move || std::thread::sleep(delay))
            .await
            .expect("the delay thread");
    }
    counters
        .busy_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    reply(StatusCode::ACCEPTED, "")
}
