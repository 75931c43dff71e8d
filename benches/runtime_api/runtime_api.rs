//! A mock of the Lambda Runtime API (`/2018-06-01/runtime/...`), driven the way Lambda drives a
//! custom runtime: a pending `GET invocation/next` is answered with one event, and the function
//! posts the result to `invocation/{id}/response` or `invocation/{id}/error`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tokio::sync::{Mutex, mpsc};

use crate::server::{Reply, Server, reply};

const PREFIX: &str = "/2018-06-01/runtime/";
const FUNCTION_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:memfault-chunk-proxy";
/// Lambda gives each invocation a deadline; the function stops retrying a margin before it.
const INVOCATION_BUDGET: Duration = Duration::from_secs(30);
/// How long the bench waits for the function before it declares it stuck.
const PATIENCE: Duration = Duration::from_secs(30);

struct Event {
    request_id: String,
    body: Bytes,
}

/// What the function posted back.
enum Report {
    Response {
        request_id: String,
        body: Bytes,
        arrived: Instant,
    },
    Error {
        request_id: String,
        body: Bytes,
    },
    InitError {
        body: Bytes,
    },
}

struct Shared {
    /// Events waiting for a `next` request. One function process polls at a time.
    events: Mutex<mpsc::UnboundedReceiver<Event>>,
    /// When each `next` request arrived.
    polls: mpsc::UnboundedSender<Instant>,
    reports: mpsc::UnboundedSender<Report>,
}

/// One mock Runtime API, for one function process.
pub(crate) struct RuntimeApi {
    server: Server,
    events: mpsc::UnboundedSender<Event>,
    polls: mpsc::UnboundedReceiver<Instant>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// When the function's pending `next` request arrived, if one is pending.
    waiting_since: Option<Instant>,
    invocations: u64,
}

/// A completed invocation: the function's answer and how long it took.
pub(crate) struct Completed {
    pub body: Bytes,
    /// From handing the event to the waiting `next` request to the arrival of the response.
    pub latency: Duration,
}

impl RuntimeApi {
    pub(crate) async fn start() -> Self {
        let (events, pending) = mpsc::unbounded_channel();
        let (poll_sender, polls) = mpsc::unbounded_channel();
        let (report_sender, reports) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: Mutex::new(pending),
            polls: poll_sender,
            reports: report_sender,
        });
        let server =
            Server::start(|| {}, move |request| handle(Arc::clone(&shared), request)).await;
        Self {
            server,
            events,
            polls,
            reports,
            waiting_since: None,
            invocations: 0,
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub(crate) fn host_port(&self) -> String {
        self.server.address().to_string()
    }

    /// Waits until the function has asked for an event (`GET invocation/next`); returns when
    /// that request arrived. The first one after a start marks the end of init.
    pub(crate) async fn ready(&mut self) -> Instant {
        if let Some(since) = self.waiting_since {
            return since;
        }
        let since = tokio::select! {
            poll = self.polls.recv() => poll.expect("the runtime API is running"),
            report = self.reports.recv() => match report {
                Some(Report::InitError { body }) => {
                    panic!("the function reported an init error: {}", String::from_utf8_lossy(&body))
                }
                _ => panic!("the function posted a result without an invocation"),
            },
            () = tokio::time::sleep(PATIENCE) => panic!(
                "no request for an event within {PATIENCE:?}; set BENCH_FUNCTION_LOGS=1 to see the function's logs"
            ),
        };
        self.waiting_since = Some(since);
        since
    }

    /// Runs one invocation: waits until the function asks for an event, hands it `event`, and
    /// returns its response. An error response or an init error fails the bench.
    pub(crate) async fn invoke(&mut self, event: Bytes) -> Completed {
        self.ready().await;
        self.waiting_since = None;
        self.invocations += 1;
        let expected_id = format!("00000000-0000-4000-8000-{:012}", self.invocations);
        let handed = Instant::now();
        self.events
            .send(Event {
                request_id: expected_id.clone(),
                body: event,
            })
            .expect("the runtime API is running");
        let report = tokio::time::timeout(PATIENCE, self.reports.recv())
            .await
            .unwrap_or_else(|_| panic!("invocation {expected_id}: no result within {PATIENCE:?}"))
            .expect("the runtime API is running");
        match report {
            Report::Response {
                request_id,
                body,
                arrived,
            } => {
                assert_eq!(request_id, expected_id, "response for the wrong invocation");
                Completed {
                    body,
                    latency: arrived - handed,
                }
            }
            Report::Error { request_id, body } => panic!(
                "invocation {request_id} failed: {}",
                String::from_utf8_lossy(&body)
            ),
            Report::InitError { body } => panic!(
                "the function reported an init error: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Reply {
    let Some(route) = request.uri().path().strip_prefix(PREFIX).map(str::to_owned) else {
        return reply(StatusCode::NOT_FOUND, "not a runtime API path");
    };
    if request.method() == Method::GET && route == "invocation/next" {
        return next(&shared).await;
    }
    if request.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return reply(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let arrived = Instant::now();
    let invocation = route
        .strip_prefix("invocation/")
        .and_then(|rest| rest.rsplit_once('/'));
    let report = match (route.as_str(), invocation) {
        ("init/error", _) => Report::InitError { body },
        (_, Some((id, "response"))) => Report::Response {
            request_id: id.to_owned(),
            body,
            arrived,
        },
        (_, Some((id, "error"))) => Report::Error {
            request_id: id.to_owned(),
            body,
        },
        _ => return reply(StatusCode::NOT_FOUND, "no such runtime API path"),
    };
    // The bench may already have moved on (a killed scenario); nothing is lost then.
    let _ = shared.reports.send(report);
    reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

/// Long-polls until the bench hands over an event, as Lambda does between invocations.
async fn next(shared: &Shared) -> Reply {
    let _ = shared.polls.send(Instant::now());
    let Some(event) = shared.events.lock().await.recv().await else {
        // The bench dropped this runtime API; the process is about to be killed.
        return reply(StatusCode::SERVICE_UNAVAILABLE, "");
    };
    let deadline = SystemTime::now() + INVOCATION_BUDGET;
    let deadline_ms = deadline
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    let mut response = reply(StatusCode::OK, event.body);
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        headers.insert(name, value.parse().expect("valid header value"));
    };
    set("content-type", "application/json".to_owned());
    set("lambda-runtime-aws-request-id", event.request_id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        FUNCTION_ARN.to_owned(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-674452c0-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=0".to_owned(),
    );
    response
}
