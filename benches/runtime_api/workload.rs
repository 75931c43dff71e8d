//! The events the bench sends: the sample heartbeat, and a fleet of devices.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::records;

pub(crate) const DEVICES: usize = 1_000;
pub(crate) const CHUNKS_PER_DEVICE: usize = 10;
pub(crate) const CHUNK_BYTES: usize = 80;
pub(crate) const STREAM_ARN: &str =
    "arn:aws:kinesis:eu-west-1:123456789012:stream/memfault-chunk-proxy-ingest";
const INGEST_QUEUE_ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:memfault-chunk-proxy-ingest";
const SEED: u64 = 0x6d65_6d66_6175_6c74;

/// `events/heartbeat.json`: a real 87-byte chunk in an IoT rule event.
pub(crate) struct Heartbeat {
    pub event: Bytes,
    pub topic: String,
    pub chunk: Bytes,
}

impl Heartbeat {
    pub(crate) fn load() -> Self {
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
    pub(crate) fn serial_and_key(&self) -> (&str, &str) {
        let levels: Vec<&str> = self.topic.split('/').collect();
        (levels[2], levels[4])
    }
}

/// `DEVICES` devices publishing `CHUNKS_PER_DEVICE` chunks of `CHUNK_BYTES` each.
pub(crate) fn fleet_events() -> Vec<String> {
    interleaved_events(DEVICES, CHUNKS_PER_DEVICE, CHUNK_BYTES, SEED)
}

/// `devices` devices publishing `chunks_per_device` chunks each, interleaved in an order
/// shuffled with `seed`. Each device's own chunks stay in order, as a device publishes them.
pub(crate) fn interleaved_events(
    devices: usize,
    chunks_per_device: usize,
    chunk_bytes: usize,
    seed: u64,
) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut arrivals: Vec<usize> = (0..devices)
        .flat_map(|device| std::iter::repeat_n(device, chunks_per_device))
        .collect();
    rng.shuffle(&mut arrivals);
    arrivals
        .into_iter()
        .map(|device| {
            let chunk: Vec<u8> = std::iter::repeat_with(|| rng.u8(..))
                .take(chunk_bytes)
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
pub(crate) fn direct_events(fleet: &[String]) -> Vec<Bytes> {
    fleet
        .iter()
        .map(|event| Bytes::from(event.clone()))
        .collect()
}

/// The queued-mode invocations: SQS events of `batch_size` records whose bodies are the events.
pub(crate) fn sqs_batches(fleet: &[String], batch_size: usize) -> Vec<Bytes> {
    batches(fleet, batch_size, sqs_record)
}

/// The stream-mode invocations: Kinesis events of `batch_size` records whose data are the
/// events, with sequence numbers ascending across batches as in one shard.
pub(crate) fn kinesis_batches(fleet: &[String], batch_size: usize) -> Vec<Bytes> {
    batches(fleet, batch_size, kinesis_record)
}

/// `{"Records": [...]}` events of `batch_size` records each; `record` makes the record of an
/// event from its position in the fleet.
fn batches(fleet: &[String], batch_size: usize, record: fn(usize, &str) -> Value) -> Vec<Bytes> {
    fleet
        .chunks(batch_size)
        .enumerate()
        .map(|(batch, events)| {
            let records: Vec<Value> = events
                .iter()
                .enumerate()
                .map(|(index, event)| record(batch * batch_size + index, event))
                .collect();
            Bytes::from(json!({ "Records": records }).to_string())
        })
        .collect()
}

fn kinesis_record(position: usize, event: &str) -> Value {
    let sequence_number = format!("4965721428354628921673306348811965839672873401{position:010}");
    records::kinesis(
        STREAM_ARN,
        &sequence_number,
        event.as_bytes(),
        1_764_072_000.125,
    )
}

fn sqs_record(sequence: usize, body: &str) -> Value {
    let id = format!("0b6a7c5e-0000-4000-8000-{sequence:012}");
    records::sqs_message(&id, INGEST_QUEUE_ARN, body)
}
