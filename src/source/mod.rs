//! Event sources: how an invocation's envelope is recognised, and one adapter per envelope that
//! turns it into delivery items and the delivery outcomes into the answer Lambda expects.
//!
//! | envelope | adapter | answer |
//! |---|---|---|
//! | IoT rule event, or Lambda's on-failure record of one | [`direct`] | delivered, set aside, or an error |
//! | SQS batch (queued mode, failure queue replay) | [`sqs`] | `batchItemFailures` by message id |
//! | Kinesis batch, or the ESM's S3 failure record of one | [`kinesis`] | `batchItemFailures` by sequence number |

pub mod direct;
pub mod kinesis;
pub mod sqs;

use std::borrow::Cow;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::Diagnostic;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::time::Instant;

use crate::config::Config;
use crate::delivery::{
    self, DeliveryLog, Item, Outcome, Refusal, Routed, Settings, Undeliverable, upload_error_type,
};
use crate::event::{ChunkMessage, EventError};
use crate::memfault::{MemfaultClient, UploadError};
use crate::observability::InvocationMetrics;
use crate::quarantine::{Cause, FailureRecord, Invocation, Quarantine};
use crate::routing::{Claims, Route, RouteError, resolve};
use crate::settled::{RecordKey, SettledMemory, Settlement};

/// Why an invocation failed, as Lambda reports it.
#[derive(Debug, Error)]
pub enum ForwardError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Batch(#[from] BatchRefused),
}

impl ForwardError {
    /// Lambda's `errorType`: `Permanent.*` will fail again however often it is retried,
    /// `Retryable.*` may succeed later (Memfault down, rate limited, too slow, or a key to fix).
    pub fn error_type(&self) -> String {
        match self {
            Self::Refused(refusal) => format!("Permanent.{}", refusal.kind()),
            Self::Upload(error) => upload_error_type(error),
            Self::Batch(_) => "Permanent.InvalidEvent".to_owned(),
        }
    }
}

impl From<ForwardError> for Diagnostic {
    fn from(error: ForwardError) -> Self {
        Diagnostic {
            error_type: error.error_type(),
            error_message: error.to_string(),
        }
    }
}

/// A batch that cannot be answered item by item: it fails whole, before anything is sent.
#[derive(Debug, Error)]
#[error(
    "refused: a record of the {source_name} batch has no usable {field}, so its failure could not be reported: the whole batch is refused"
)]
pub struct BatchRefused {
    source_name: &'static str,
    field: &'static str,
}

impl BatchRefused {
    fn new(source_name: &'static str, field: &'static str) -> Self {
        let refused = Self { source_name, field };
        tracing::warn!(
            outcome = "refused",
            source = source_name,
            error_type = "Permanent.InvalidEvent",
            error = %refused,
            "batch refused whole"
        );
        refused
    }
}

/// What a direct invocation answers when Memfault accepted the chunk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivered {
    pub device_serial: String,
    pub bytes: usize,
    pub status: u16,
    pub attempts: u32,
}

/// What a direct invocation answers when the chunk can never be delivered and was written to the
/// failure queue instead: not a delivery, and not an error Lambda would retry in vain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SetAside {
    pub set_aside: bool,
    pub error_type: String,
    pub error_message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Response {
    Delivered(Delivered),
    SetAside(SetAside),
    Sqs(SqsBatchResponse),
    Kinesis(KinesisEventResponse),
}

/// What an adapter works with, for one invocation.
pub struct Services<'a> {
    pub config: &'a Config,
    pub client: &'a MemfaultClient,
    pub memory: &'a SettledMemory,
    pub quarantine: Option<&'a Quarantine>,
    pub invocation: Invocation<'a>,
    pub deadline: Instant,
}

impl Services<'_> {
    /// Validates a parsed message and decides where it goes.
    fn routed(&self, message: Result<ChunkMessage, EventError>) -> Result<Routed, Refusal> {
        let message = message?;
        let route = self.route(&message)?;
        Ok(Routed {
            route,
            payload: message.payload,
        })
    }

    fn route(&self, message: &ChunkMessage) -> Result<Route, RouteError> {
        let claims = Claims {
            topic: &message.topic,
            device_serial: message.device_serial.as_deref(),
            project_key: message.project_key.as_deref(),
        };
        resolve(
            &self.config.topic_pattern,
            self.config.project_key.as_ref(),
            self.config.project_keys.as_ref(),
            claims,
        )
    }

    async fn deliver(
        &self,
        items: Vec<Item>,
        log: DeliveryLog,
        metrics: &mut InvocationMetrics,
    ) -> Vec<Outcome> {
        let settings = Settings {
            batch_max_chunks: self.config.batch_max_chunks,
            upload_concurrency: self.config.upload_concurrency,
            stall_limit: self.config.stall_limit,
        };
        delivery::deliver(
            self.client,
            self.memory,
            settings,
            log,
            items,
            self.deadline,
            metrics,
        )
        .await
    }

    /// Writes `records` to the failure queue and returns, in the same order, which were stored;
    /// a stored record is remembered as settled. Without a failure queue nothing is stored.
    async fn set_aside(
        &self,
        records: Vec<(FailureRecord, Option<RecordKey>)>,
        metrics: &mut InvocationMetrics,
    ) -> Vec<bool> {
        let Some(quarantine) = self.quarantine else {
            return vec![false; records.len()];
        };
        let (records, keys): (Vec<FailureRecord>, Vec<Option<RecordKey>>) =
            records.into_iter().unzip();
        let stored = quarantine
            .set_aside(&records, self.invocation, self.deadline)
            .await;
        for (key, stored) in keys.iter().zip(&stored) {
            if *stored {
                metrics.chunks_quarantined += 1;
                if let Some(key) = key {
                    self.memory.remember(*key, Settlement::SetAside);
                }
            }
        }
        stored
    }
}

/// The device each item goes to, for the failure queue's message groups.
fn device_serials(items: &[Item]) -> Vec<Option<String>> {
    items
        .iter()
        .map(|item| {
            item.content
                .as_ref()
                .ok()
                .map(|routed| routed.route.device_serial.to_string())
        })
        .collect()
}

/// Settled before any failure-queue write: delivered, or set aside by an earlier invocation.
fn is_settled(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Delivered(_) | Outcome::SetAside(Undeliverable::SetAsideEarlier)
    )
}

/// What the failure queue's record says about why a record was set aside.
fn cause(undeliverable: &Undeliverable) -> Cause {
    Cause {
        condition: undeliverable.condition(),
        error_type: undeliverable.error_type(),
        error_message: undeliverable.message(),
    }
}

/// The log line and the count for one refused item; `item_id` names it within its batch.
fn note_refusal(metrics: &mut InvocationMetrics, item_id: Option<&str>, refusal: &Refusal) {
    metrics.refusals += 1;
    tracing::warn!(
        outcome = "refused",
        item_id,
        error_type = %format!("Permanent.{}", refusal.kind()),
        error = %refusal,
        "chunk refused"
    );
}

/// The one summary line of a batch, with its slowest delivered upload and the item it carried.
fn log_batch<'a>(
    metrics: &InvocationMetrics,
    source_name: &str,
    outcomes: impl Iterator<Item = (&'a str, &'a Outcome)>,
) {
    let slowest = outcomes
        .filter_map(|(item_id, outcome)| match outcome {
            Outcome::Delivered(delivery::Accepted::Now(delivery)) => {
                Some((delivery.upstream, item_id))
            }
            _ => None,
        })
        .max();
    tracing::info!(
        outcome = "batch",
        source = source_name,
        slowest_upstream_ms = slowest.map(|(upstream, _)| upstream.as_millis() as u64),
        slowest_item_id = slowest.map(|(_, item_id)| item_id),
        chunks_forwarded = metrics.chunks_forwarded,
        bytes = metrics.bytes_forwarded,
        upstream_requests = metrics.upstream_requests,
        refused = metrics.refusals,
        quarantined = metrics.chunks_quarantined,
        undelivered = metrics.chunks_undelivered,
        configuration_rejected = metrics.configuration_rejected,
        "batch processed"
    );
}

/// What an invocation's payload is. Batches borrow their records from the payload text.
#[derive(Debug)]
pub enum Envelope<'a> {
    /// Anything that is not one of the batches below: an IoT rule event or a failure record of
    /// one, delivered or refused as a single chunk.
    Direct,
    Sqs(Vec<&'a RawValue>),
    Kinesis(Vec<&'a RawValue>),
    /// An event source mapping's S3 on-failure record: a Kinesis batch as escaped JSON text.
    KinesisFailureRecord(Cow<'a, str>),
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "Records", borrow, default)]
    records: Option<&'a RawValue>,
    #[serde(rename = "KinesisBatchInfo", borrow, default)]
    kinesis_batch_info: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(rename = "eventSource", borrow, default)]
    event_source: Option<Cow<'a, str>>,
}

/// Recognises the envelope by what it really is, never by one field alone: a batch is a
/// non-empty `Records` array whose records all come from the same known source. Lambda never
/// sends an empty batch, so an object with `"Records": []` is not answered as an empty success:
/// it is read as a single event, delivered or refused.
///
/// Only the envelope's own fields are read here; whatever else the payload holds, however
/// deeply nested, is skipped without being parsed.
pub fn envelope(payload: &str) -> Envelope<'_> {
    let Ok(head) = serde_json::from_str::<Head<'_>>(payload) else {
        return Envelope::Direct;
    };
    if head.kinesis_batch_info.is_some() {
        if let Some(text) = head
            .payload
            .and_then(|payload| serde_json::from_str::<Cow<'_, str>>(payload.get()).ok())
        {
            return Envelope::KinesisFailureRecord(text);
        }
    }
    let Some(records) = head
        .records
        .and_then(|records| serde_json::from_str::<Vec<&RawValue>>(records.get()).ok())
    else {
        return Envelope::Direct;
    };
    let Some(first) = records.first().and_then(|record| event_source(record)) else {
        return Envelope::Direct;
    };
    if !records
        .iter()
        .all(|record| event_source(record).as_deref() == Some(first.as_ref()))
    {
        return Envelope::Direct;
    }
    match first.as_ref() {
        "aws:sqs" => Envelope::Sqs(records),
        "aws:kinesis" => Envelope::Kinesis(records),
        _ => Envelope::Direct,
    }
}

fn event_source(record: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<RecordHead<'_>>(record.get())
        .ok()
        .and_then(|head| head.event_source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape(event: serde_json::Value) -> &'static str {
        match envelope(&event.to_string()) {
            Envelope::Direct => "direct",
            Envelope::Sqs(_) => "sqs",
            Envelope::Kinesis(_) => "kinesis",
            Envelope::KinesisFailureRecord(_) => "kinesis failure record",
        }
    }

    #[test]
    fn batches_are_recognised_by_their_records() {
        let sqs = json!({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]});
        assert_eq!(shape(sqs), "sqs");
        let kinesis = json!({"Records": [
            {"eventSource": "aws:kinesis", "kinesis": {}},
            {"eventSource": "aws:kinesis", "kinesis": {}}
        ]});
        assert_eq!(shape(kinesis), "kinesis");
        let record = json!({"KinesisBatchInfo": {}, "payload": "{\"Records\":[]}"});
        assert_eq!(shape(record), "kinesis failure record");
    }

    #[test]
    fn anything_else_is_a_single_event() {
        for event in [
            json!({"data": "AQ==", "topic": "t"}),
            json!({"data": "AQ==", "topic": "t", "Records": []}),
            json!({"Records": []}),
            json!({"Records": "not an array"}),
            json!({"Records": [{"eventSource": "aws:s3"}]}),
            json!({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:kinesis"}]}),
            json!({"Records": [{"eventSource": "aws:sqs"}, {}]}),
            json!({"KinesisBatchInfo": {}, "payload": {"not": "text"}}),
            json!("a string"),
            json!([1, 2]),
        ] {
            assert_eq!(shape(event.clone()), "direct", "{event}");
        }
    }

    #[test]
    fn hostile_nesting_elsewhere_does_not_stop_recognition() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!(r#"{{"junk": {deep}, "Records": [{{"eventSource": "aws:sqs"}}]}}"#);
        assert!(matches!(envelope(&text), Envelope::Sqs(records) if records.len() == 1));
    }
}
