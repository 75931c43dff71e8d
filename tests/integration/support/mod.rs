//! Shared test scaffolding: configuration for a loopback upstream, invocation helpers, the
//! sample events, and a TCP relay that sees what an HTTP mock cannot (connections).

mod multipart;
mod records;

pub(crate) use multipart::read_parts;
pub(crate) use records::sqs_message;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::KinesisEventResponse;
use base64::Engine as _;
use lambda_runtime::{Context, LambdaEvent};
use memfault_chunk_proxy::ForwardError;
use memfault_chunk_proxy::{Config, Forwarder, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub(crate) const SAMPLE_KEY: &str = "YOUR_PROJECT_KEY";

/// The time until the invocation deadline of a test that is not about the deadline: far more
/// than any such invocation takes, even on a busy machine. A test about the deadline gives its
/// own budget.
pub(crate) const BUDGET: Duration = Duration::from_secs(20);

/// A function's environment in a test: its variables, made into a [`Config`] by the one
/// constructor the function uses, so that a test can only configure what a deployment can.
#[derive(Debug, Clone)]
pub(crate) struct Env(BTreeMap<&'static str, String>);

impl Env {
    pub(crate) fn set(&mut self, name: &'static str, value: impl ToString) {
        self.0.insert(name, value.to_string());
    }

    pub(crate) fn config(&self) -> Config {
        Config::check_names(self.0.keys().map(|name| (*name).to_owned()))
            .and_then(|()| Config::from_lookup(|name| self.0.get(name).cloned()))
            .unwrap_or_else(|error| panic!("{error}"))
    }
}

/// The environment of a function with a loopback upstream, retry waits short enough for tests
/// and no metrics.
pub(crate) fn config_for(base_url: &str) -> Env {
    let mut env = Env(BTreeMap::new());
    env.set("MEMFAULT_CHUNKS_URL", base_url);
    env.set("MEMFAULT_MAX_ATTEMPTS", 3);
    env.set("MEMFAULT_RETRY_BASE_DELAY_MS", 5);
    env.set("MEMFAULT_RETRY_MAX_DELAY_MS", 20);
    env.set("MEMFAULT_CONNECT_TIMEOUT_MS", 500);
    env.set("MEMFAULT_REQUEST_TIMEOUT_MS", 5_000);
    env.set("MEMFAULT_DEADLINE_MARGIN_MS", 200);
    env.set("MEMFAULT_METRICS_NAMESPACE", "");
    env
}

pub(crate) fn forwarder(env: Env) -> Forwarder {
    Forwarder::new(env.config()).expect("client builds")
}

/// Invokes the handler as the runtime would, with `budget` until the invocation deadline.
pub(crate) async fn invoke(
    forwarder: &Forwarder,
    payload: Value,
    budget: Duration,
) -> Result<Response, ForwardError> {
    // Each invocation has its own request id, as on Lambda: a direct event's id names it in the
    // function's memory of settled records.
    static INVOCATIONS: AtomicUsize = AtomicUsize::new(0);
    let request_id = format!("request-{}", INVOCATIONS.fetch_add(1, Ordering::Relaxed));
    invoke_as(forwarder, payload, budget, &request_id).await
}

/// Invokes the handler under a given request id, as Lambda does when it retries an invocation.
pub(crate) async fn invoke_as(
    forwarder: &Forwarder,
    payload: Value,
    budget: Duration,
    request_id: &str,
) -> Result<Response, ForwardError> {
    let mut context = Context::default();
    context.request_id = request_id.to_owned();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    context.deadline = (now + budget).as_millis() as u64;
    let payload = serde_json::value::to_raw_value(&payload).expect("a JSON value is JSON text");
    forwarder.handle(LambdaEvent::new(payload, context)).await
}

pub(crate) fn sample_event(relative: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The chunk bytes a sample event carries.
pub(crate) fn sample_payload(relative: &str) -> Vec<u8> {
    use base64::Engine as _;
    let event = sample_event(relative);
    let data = event["data"].as_str().expect("sample has data");
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap()
}

/// The rule's event for one chunk on the default topic layout.
pub(crate) fn chunk_event(serial: &str, key: &str, chunk: &[u8]) -> Value {
    json!({
        "data": base64::engine::general_purpose::STANDARD.encode(chunk),
        "topic": format!("prod/board/{serial}/memfault/{key}/chunk"),
    })
}

/// An SQS record of the queue `queue_arn` whose body is `event` (for a body that is not JSON,
/// [`sqs_message`]).
pub(crate) fn sqs_record(id: &str, queue_arn: &str, event: &Value) -> Value {
    sqs_message(id, queue_arn, &event.to_string())
}

/// Device `serial`'s `chunks`, in order, as one batch of the ingest queue: messages `m0`, `m1`,
/// ...
pub(crate) fn queued_batch(serial: &str, chunks: &[Vec<u8>]) -> Value {
    let records = chunks
        .iter()
        .enumerate()
        .map(|(index, data)| {
            sqs_record(
                &format!("m{index}"),
                INGEST_ARN,
                &chunk_event(serial, "Key", data),
            )
        })
        .collect();
    batch(records)
}

pub(crate) const INGEST_ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:ingest";

pub(crate) const STREAM_ARN: &str =
    "arn:aws:kinesis:eu-west-1:123456789012:stream/memfault-chunk-proxy";

/// A realistic sequence number prefix; records get consecutive numbers after it.
const SEQUENCE_BASE: u128 = 49_657_214_283_546_289_216_733_063_488_119;

pub(crate) fn sequence(index: usize) -> String {
    (SEQUENCE_BASE + index as u128).to_string()
}

/// The Kinesis record at `index` of a shard, carrying `event`.
pub(crate) fn record_of(index: usize, event: &Value) -> Value {
    kinesis_record(&sequence(index), event.to_string().as_bytes())
}

pub(crate) fn batch(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// The function's answer to the SQS batch `event`.
pub(crate) async fn run_sqs(
    forwarder: &Forwarder,
    event: Value,
    budget: Duration,
) -> SqsBatchResponse {
    match invoke(forwarder, event, budget).await {
        Ok(Response::Sqs(response)) => response,
        other => panic!("expected an SQS batch response, got {other:?}"),
    }
}

pub(crate) async fn run_kinesis(
    forwarder: &Forwarder,
    event: Value,
    budget: Duration,
) -> KinesisEventResponse {
    match invoke(forwarder, event, budget).await {
        Ok(Response::Kinesis(response)) => response,
        other => panic!("expected a Kinesis batch response, got {other:?}"),
    }
}

/// Runs `event` against a Memfault that takes everything and checks that the function refuses
/// the batch whole, naming `named`, before any request.
pub(crate) async fn assert_refused_whole(event: Value, named: &str) {
    let server = server_answering(ResponseTemplate::new(202)).await;
    let forwarder = forwarder(config_for(&server.uri()));

    let error = invoke(&forwarder, event, BUDGET).await.unwrap_err();

    assert_eq!(error.error_type(), "Permanent.MalformedBatch");
    assert!(error.to_string().contains(named), "{error}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// The sequence numbers a Kinesis answer reports.
pub(crate) fn reported(response: &KinesisEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone().unwrap())
        .collect()
}

pub(crate) fn serial_of(request: &Request) -> String {
    request.url.path().rsplit('/').next().unwrap().to_owned()
}

/// The ARN of the quarantine queue [`with_quarantine_queue`] configures: its messages are replays.
pub(crate) const QUARANTINE_ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:memfault-failures";

pub(crate) fn with_quarantine_queue(mut env: Env, queue: &MockServer) -> Env {
    let url = format!("{}/123456789012/memfault-failures", queue.uri());
    env.set("MEMFAULT_QUARANTINE_QUEUE_URL", url);
    env.set("AWS_REGION", "eu-west-1");
    env.set("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    env.set("AWS_SECRET_ACCESS_KEY", "SECRETEXAMPLE");
    env.set("AWS_SESSION_TOKEN", "TOKEN");
    env
}

/// A mock SQS that stores every message the JSON protocol's SendMessage carries.
pub(crate) async fn quarantine_queue_answering(status: u16) -> MockServer {
    let queue = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("x-amz-target", "AmazonSQS.SendMessage"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({
            "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274",
            "MD5OfMessageBody": "fafb00f5732ab283681e124bf8747ed1"
        })))
        .mount(&queue)
        .await;
    queue
}

/// The failure records the mock SQS received, parsed.
pub(crate) async fn quarantined(queue: &MockServer) -> Vec<Value> {
    queue
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            let call: Value = serde_json::from_slice(&request.body).unwrap();
            serde_json::from_str(call["MessageBody"].as_str().unwrap()).unwrap()
        })
        .collect()
}

/// A record that has just entered its stream, as Kinesis stamps it: seconds with a fraction.
pub(crate) fn arrived_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A Kinesis record as Lambda delivers it, carrying the rule's JSON output as its data.
pub(crate) fn kinesis_record(sequence_number: &str, data: &[u8]) -> Value {
    records::kinesis(STREAM_ARN, sequence_number, data, arrived_now())
}

/// Distinct, binary chunks with CR LF and dashes inside, so that multipart framing cannot
/// depend on content.
pub(crate) fn chunk(device: usize, index: usize) -> Vec<u8> {
    let mut bytes = vec![0x80, device as u8, index as u8, b'\r', b'\n', b'-', b'-'];
    bytes.extend(std::iter::repeat_n(0xA5, index % 5));
    bytes
}

/// Splits a `multipart/mixed` request with multer, an independent form-data parser, into its
/// parts, checking that each is the form field `chunk<i>` with the file name `chunk.bin<i>`, as
/// memfault-cli names them, and declares its length.
pub(crate) fn multipart_parts(request: &Request) -> Vec<Vec<u8>> {
    let content_type = request.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("multipart/mixed;"),
        "{content_type}"
    );
    let parts = multipart::read_parts(content_type, &request.body, |field| {
        let index = field.index();
        assert_eq!(field.name(), Some(format!("chunk{index}").as_str()));
        assert_eq!(
            field.file_name(),
            Some(format!("chunk.bin{index}").as_str())
        );
        assert_eq!(
            field.content_type().map(|m| m.essence_str()),
            Some("application/octet-stream")
        );
        field.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse::<usize>()
            .unwrap()
    })
    .unwrap_or_else(|error| panic!("{error}"));
    parts
        .into_iter()
        .map(|(declared, bytes)| {
            assert_eq!(declared, bytes.len());
            bytes
        })
        .collect()
}

/// A TCP relay in front of an HTTP mock. It counts the connections the client opens and how
/// many are open at once, and can turn every open connection stale: the next request written
/// to one is answered with a TCP reset, as a connection dropped while a Lambda container was
/// frozen would be.
pub(crate) struct Relay {
    address: SocketAddr,
    stats: Arc<RelayStats>,
}

#[derive(Default)]
struct RelayStats {
    opened: AtomicUsize,
    open_now: AtomicUsize,
    most_open: AtomicUsize,
    generation: AtomicUsize,
}

impl Relay {
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stats = Arc::new(RelayStats::default());
        let accepting = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let stats = Arc::clone(&accepting);
                tokio::spawn(relay_connection(client, upstream, stats));
            }
        });
        Self { address, stats }
    }

    pub(crate) fn uri(&self) -> String {
        format!("http://{}", self.address)
    }

    pub(crate) fn connections_opened(&self) -> usize {
        self.stats.opened.load(Ordering::SeqCst)
    }

    pub(crate) fn most_open_at_once(&self) -> usize {
        self.stats.most_open.load(Ordering::SeqCst)
    }

    pub(crate) fn make_open_connections_stale(&self) {
        self.stats.generation.fetch_add(1, Ordering::SeqCst);
    }
}

async fn relay_connection(client: TcpStream, upstream: SocketAddr, stats: Arc<RelayStats>) {
    let born_in = stats.generation.load(Ordering::SeqCst);
    stats.opened.fetch_add(1, Ordering::SeqCst);
    let open = stats.open_now.fetch_add(1, Ordering::SeqCst) + 1;
    stats.most_open.fetch_max(open, Ordering::SeqCst);
    // Closing with a zero linger sends RST instead of FIN.
    client.set_zero_linger().unwrap();
    if let Ok(server) = TcpStream::connect(upstream).await {
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let to_server = async {
            let mut buffer = vec![0; 16 * 1024];
            loop {
                let read = client_read.read(&mut buffer).await.unwrap_or(0);
                let stale = stats.generation.load(Ordering::SeqCst) != born_in;
                if read == 0 || stale {
                    return;
                }
                if server_write.write_all(&buffer[..read]).await.is_err() {
                    return;
                }
            }
        };
        let to_client = tokio::io::copy(&mut server_read, &mut client_write);
        tokio::select! {
            () = to_server => {}
            _ = to_client => {}
        }
    }
    stats.open_now.fetch_sub(1, Ordering::SeqCst);
}

/// A server that accepts connections, reads the request, then resets the connection.
pub(crate) async fn resetting_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            socket.set_zero_linger().unwrap();
            let mut buffer = [0; 1024];
            let _ = socket.read(&mut buffer).await;
            drop(socket);
        }
    });
    (uri, accepted)
}

/// A mock Memfault (or queue) that gives every POST the answer of `answer`: a fixed answer (a
/// [`ResponseTemplate`]) or a [`Respond`] that reads the request.
pub(crate) async fn server_answering(answer: impl Respond + 'static) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

/// A mock Memfault that answers each device of `statuses` with its status and every other
/// upload with 202.
pub(crate) async fn server_answering_devices(statuses: &[(&str, u16)]) -> MockServer {
    let server = server_answering(ResponseTemplate::new(202)).await;
    for (device, status) in statuses {
        Mock::given(method("POST"))
            .and(path(format!("/api/v0/chunks/{device}")))
            .respond_with(ResponseTemplate::new(*status))
            .with_priority(1)
            .mount(&server)
            .await;
    }
    server
}

/// A mock Memfault that answers the first POST with `first` and every later one with `then`.
pub(crate) async fn server_answering_once_then(
    first: ResponseTemplate,
    then: ResponseTemplate,
) -> MockServer {
    let server = server_answering(then).await;
    Mock::given(method("POST"))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    server
}

/// Answers every POST with `status` and a body that repeats the request's headers, as some
/// proxies and web application firewalls do in their error pages.
pub(crate) struct EchoHeaders(pub u16);

impl wiremock::Respond for EchoHeaders {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let headers: String = request
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap_or("?")))
            .collect();
        ResponseTemplate::new(self.0).set_body_string(format!("Request headers:\n{headers}"))
    }
}
