//! The events the bench sends: the sample heartbeat, and a fleet of devices.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};

pub const DEVICES: usize = 1_000;
pub const CHUNKS_PER_DEVICE: usize = 10;
pub const CHUNK_BYTES: usize = 80;
const SEED: u64 = 0x6d65_6d66_6175_6c74;

/// `events/heartbeat.json`: a real 87-byte chunk in an IoT rule event.
pub struct Heartbeat {
    pub event: Bytes,
    pub topic: String,
    pub chunk: Bytes,
}

impl Heartbeat {
    pub fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("events/heartbeat.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let event: Value = serde_json::from_str(&text).expect("heartbeat.json is JSON");
        let chunk = BASE64
            .decode(event["data"].as_str().expect("heartbeat.json has data"))
            .expect("heartbeat.json data is base64");
        Self {
            topic: event["topic"].as_str().expect("a topic").to_owned(),
            event: Bytes::from(text),
            chunk: Bytes::from(chunk),
        }
    }

    /// The device serial and project key the topic names (`prod/<board>/<serial>/memfault/<key>/chunk`).
    pub fn serial_and_key(&self) -> (&str, &str) {
        let levels: Vec<&str> = self.topic.split('/').collect();
        (levels[2], levels[4])
    }
}

/// `DEVICES` devices publishing `CHUNKS_PER_DEVICE` chunks each, interleaved in an order shuffled
/// with a fixed seed. Each device's own chunks stay in order, as a device publishes them.
pub fn fleet_events() -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut arrivals: Vec<usize> = (0..DEVICES)
        .flat_map(|device| std::iter::repeat_n(device, CHUNKS_PER_DEVICE))
        .collect();
    rng.shuffle(&mut arrivals);
    arrivals
        .into_iter()
        .map(|device| {
            let chunk: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
                .take(CHUNK_BYTES)
                .collect();
            json!({
                "data": BASE64.encode(chunk),
                "topic": format!("prod/bench/DEV{device}/memfault/BenchKey01/chunk"),
            })
            .to_string()
        })
        .collect()
}

/// The direct-mode invocations: one IoT rule event each.
pub fn direct_events(fleet: &[String]) -> Vec<Bytes> {
    fleet
        .iter()
        .map(|event| Bytes::from(event.clone()))
        .collect()
}

/// The queued-mode invocations: SQS events of `batch_size` records whose bodies are the events.
pub fn sqs_batches(fleet: &[String], batch_size: usize) -> Vec<Bytes> {
    fleet
        .chunks(batch_size)
        .enumerate()
        .map(|(batch, bodies)| {
            let records: Vec<Value> = bodies
                .iter()
                .enumerate()
                .map(|(index, body)| sqs_record(batch * batch_size + index, body))
                .collect();
            Bytes::from(json!({ "Records": records }).to_string())
        })
        .collect()
}

fn sqs_record(sequence: usize, body: &str) -> Value {
    json!({
        "messageId": format!("0b6a7c5e-0000-4000-8000-{sequence:012}"),
        "receiptHandle": format!("AQEB-bench-receipt-{sequence}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764072000000",
            "SenderId": "AROAEXAMPLE:iot",
            "ApproximateFirstReceiveTimestamp": "1764072000100"
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:memfault-chunk-proxy-ingest",
        "awsRegion": "eu-west-1"
    })
}
