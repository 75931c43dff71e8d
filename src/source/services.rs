//! What the adapters share: routing a parsed message, running the delivery core, setting records
//! aside through it, the one loop of a batch, and the log lines of refusals and batches.

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{BatchRefused, ForwardError, Response};
use crate::config::Config;
use crate::delivery::{Deliverer, Item, Outcome, Refusal, Routed, ToSetAside, Undeliverable};
use crate::event::{ChunkMessage, unwrap_failure_record};
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::quarantine::{Cause, FailureRecord, RequestContext, Stored};
use crate::routing::{Claims, DeviceSerial, Route, RouteError};
use crate::settled::RecordKey;
use crate::source_kind::SourceKind;

/// What an adapter works with, for one invocation.
pub(crate) struct Services<'a> {
    pub config: &'a Config,
    pub deliverer: &'a Deliverer,
    pub context: RequestContext<'a>,
    pub deadline: Instant,
}

impl Services<'_> {
    /// Decides where a parsed message goes.
    pub(super) fn routed(&self, message: ChunkMessage) -> Result<Routed, Refusal> {
        let route = self.route(&message)?;
        Ok(Routed {
            route,
            payload: message.payload,
        })
    }

    /// The device an item is about, for its log lines and its failure record: its route's, or
    /// for a refused item the valid one its event names (the key, the project or the payload
    /// may be what is wrong); `None` when it names none, which no line then invents.
    pub(super) fn device_of(
        &self,
        content: &Result<Routed, Refusal>,
        event: Option<&Value>,
    ) -> Option<String> {
        match content {
            Ok(routed) => Some(routed.route.device_serial.to_string()),
            Err(_) => self.named_device(event?).map(|serial| serial.to_string()),
        }
    }

    fn named_device(&self, event: &Value) -> Option<DeviceSerial> {
        let event = unwrap_failure_record(event);
        let text = |field| event.get(field).and_then(Value::as_str);
        // A device_serial field that is there but no text names no device: the topic's capture
        // would contradict what the rule selected.
        let device_serial = match event.get("device_serial") {
            None | Some(Value::Null) => None,
            Some(_) => Some(text("device_serial")?),
        };
        self.config.router().named_device(Claims {
            topic: text("topic")?,
            device_serial,
            project_key: None,
        })
    }

    fn route(&self, message: &ChunkMessage) -> Result<Route, RouteError> {
        let claims = Claims {
            topic: &message.topic,
            device_serial: message.device_serial.as_deref(),
            project_key: message.project_key.as_deref(),
        };
        self.config.router().resolve(claims)
    }

    /// Runs the delivery core on `items`, by this invocation's deadline.
    pub(super) async fn deliver(
        &self,
        items: Vec<Item>,
        source: SourceKind,
        metrics: &mut InvocationMetrics,
    ) -> Vec<Outcome> {
        self.deliverer
            .deliver(items, source, self.deadline, metrics)
            .await
    }

    /// Whether `queue_arn` names the quarantine queue: its messages are replays.
    pub(super) fn is_quarantine_queue(&self, queue_arn: &str) -> bool {
        self.deliverer.is_quarantine_queue(queue_arn)
    }

    /// Names a record for the memory of settled records.
    pub(super) fn record_key(&self, parts: &[&str]) -> RecordKey {
        self.deliverer.record_key(parts)
    }

    /// Sets `records` aside through the delivery core, by this invocation's deadline.
    pub(super) async fn set_aside<T>(
        &self,
        records: Vec<ToSetAside<T>>,
        metrics: &mut InvocationMetrics,
    ) -> Vec<(T, Stored)> {
        self.deliverer
            .set_aside(records, self.context, self.deadline, metrics)
            .await
    }
}

/// An SQS or Kinesis batch: how its records are read, and how its answer names the records
/// that must come back. Everything else about a batch is [`forward_batch`]'s.
pub(super) trait Batch<'a> {
    const KIND: SourceKind;
    type Record: BatchRecord;
    /// The batch's records, each with its item, in the order they are to be delivered; a record
    /// that could be neither reported nor named refuses the whole batch.
    fn read(
        services: &Services<'_>,
        records: Vec<&'a RawValue>,
    ) -> Result<Vec<(Self::Record, Item)>, BatchRefused>;
    /// The answer naming `failures` (item ids, in batch order) as the batch's item failures.
    fn answer(failures: Vec<String>) -> Response;
}

/// A record of an SQS or Kinesis batch, as its adapter names it and would set it aside.
pub(super) trait BatchRecord {
    /// How the answer's `batchItemFailures` name it.
    fn item_id(&self) -> &str;
    /// The JSON it holds, if any: what a refusal's line reads the device from.
    fn event(&self) -> Option<&Value>;
    /// Whether the function may write it to the quarantine queue: not a message that came from
    /// there (a replay).
    fn may_set_aside(&self) -> bool {
        true
    }
    fn failure_record(
        &self,
        device_serial: Option<String>,
        undeliverable: &Undeliverable,
    ) -> FailureRecord;
}

/// The one loop of a batch: read, deliver, set aside, answer with the item failures, log the
/// summary line and write the metrics.
pub(super) async fn forward_batch<'a, B: Batch<'a>>(
    services: &Services<'_>,
    records: Vec<&'a RawValue>,
) -> Result<Response, ForwardError> {
    let entries = B::read(services, records).map_err(ForwardError::batch)?;
    let mut metrics = InvocationMetrics::default();
    let answered = services.deliver_batch(entries, B::KIND, &mut metrics).await;
    let failures = answered
        .iter()
        .filter(|answered| !answered.settled())
        .map(|answered| answered.record.item_id().to_owned())
        .collect();
    log_batch(&metrics, B::KIND, &answered);
    emit_metrics(services.config.metrics_namespace(), B::KIND, &metrics);
    Ok(B::answer(failures))
}

/// What became of one record of a batch.
pub(super) struct Answered<R> {
    pub record: R,
    /// The valid device it names, if any.
    pub device_serial: Option<String>,
    pub outcome: Outcome,
    /// Whether this invocation stored it on the quarantine queue (only an undeliverable record
    /// is written there).
    pub stored: Stored,
}

impl<R> Answered<R> {
    /// Delivered, settled earlier, or stored on the quarantine queue: not an item failure.
    pub(super) fn settled(&self) -> bool {
        self.outcome.is_settled() || self.stored == Stored::Yes
    }
}

impl Services<'_> {
    /// Delivers a batch's records, each with its item, and sets aside what can never be
    /// delivered. Those not [settled](Answered::settled) are the batch's item failures.
    ///
    /// A queue sets aside every undeliverable record: it never sends a settled one again. A
    /// stream sets aside those before the first record kept for a retry: it resends everything
    /// from there, so those after it come back anyway.
    async fn deliver_batch<R: BatchRecord>(
        &self,
        entries: Vec<(R, Item)>,
        source: SourceKind,
        metrics: &mut InvocationMetrics,
    ) -> Vec<Answered<R>> {
        let mut records = Vec::with_capacity(entries.len());
        let mut items = Vec::with_capacity(entries.len());
        for (record, item) in entries {
            let device_serial = self.device_of(&item.content, record.event());
            records.push((record, item.key, device_serial));
            items.push(item);
        }
        let outcomes = self.deliver(items, source, metrics).await;
        let first_kept = || outcomes.iter().position(|o| matches!(o, Outcome::Kept(_)));
        let reachable = if source.holds_order() {
            first_kept().unwrap_or(outcomes.len())
        } else {
            outcomes.len()
        };
        let mut answered: Vec<Answered<R>> = Vec::with_capacity(records.len());
        let mut to_set_aside = Vec::new();
        for (index, ((record, key, device_serial), outcome)) in
            records.into_iter().zip(outcomes).enumerate()
        {
            if let Outcome::SetAside(undeliverable) = &outcome {
                if let Undeliverable::Refused(refusal) = undeliverable {
                    let device_serial = device_serial.as_deref();
                    note_refusal(metrics, Some(record.item_id()), device_serial, refusal);
                }
                if index < reachable && record.may_set_aside() {
                    let failure = record.failure_record(device_serial.clone(), undeliverable);
                    to_set_aside.push(ToSetAside {
                        tag: index,
                        record: failure,
                        key,
                    });
                }
            }
            answered.push(Answered {
                record,
                device_serial,
                outcome,
                stored: Stored::No,
            });
        }
        for (index, stored) in self.set_aside(to_set_aside, metrics).await {
            answered[index].stored = stored;
        }
        metrics.chunks_undelivered += answered
            .iter()
            .filter(|answered| !answered.settled())
            .count() as u64;
        answered
    }
}

/// What the quarantine queue's record says about why a record was set aside.
pub(super) fn cause(undeliverable: &Undeliverable) -> Cause {
    Cause {
        condition: undeliverable.condition(),
        error_type: undeliverable.error_type(),
        error_message: undeliverable.message(),
    }
}

/// The log line and the count for one refused item; `item_id` names it within its batch, and
/// `device_serial` the valid device it names, if any.
pub(super) fn note_refusal(
    metrics: &mut InvocationMetrics,
    item_id: Option<&str>,
    device_serial: Option<&str>,
    refusal: &Refusal,
) {
    metrics.refusals += 1;
    tracing::warn!(
        outcome = "refused",
        item_id,
        device_serial,
        error_type = %refusal.error_type(),
        error = %refusal,
        "chunk refused"
    );
}

/// The one summary line of a batch, with its slowest delivered upload, the item it carried and
/// its device.
fn log_batch<R: BatchRecord>(
    metrics: &InvocationMetrics,
    source: SourceKind,
    answered: &[Answered<R>],
) {
    let slowest = answered
        .iter()
        .filter_map(|answered| match &answered.outcome {
            Outcome::Delivered(delivery) => Some((
                delivery.upstream,
                answered.record.item_id(),
                answered.device_serial.as_deref(),
            )),
            _ => None,
        })
        .max();
    tracing::info!(
        outcome = "batch",
        source = source.name(),
        slowest_upstream_ms = slowest.map(|(upstream, _, _)| upstream.as_millis() as u64),
        slowest_item_id = slowest.map(|(_, item_id, _)| item_id),
        slowest_device_serial = slowest.and_then(|(_, _, device_serial)| device_serial),
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
