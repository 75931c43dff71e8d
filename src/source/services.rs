//! What the adapters share: routing a parsed message, running the delivery core, setting records
//! aside, and the log lines of refusals and batches.

use tokio::time::Instant;

use crate::config::Config;
use std::time::Duration;

use crate::delivery::{
    self, Accepted, DeliveryLog, Environment, Item, Outcome, Refusal, Routed, Settings,
    StallClocks, Undeliverable,
};
use crate::event::ChunkMessage;
use crate::memfault::MemfaultClient;
use crate::observability::InvocationMetrics;
use crate::quarantine::{Cause, FailureRecord, Invocation, Quarantine};
use crate::routing::{Claims, Route, RouteError};
use crate::settled::{RecordKey, SettledMemory, Settlement};

/// What an adapter works with, for one invocation.
pub(crate) struct Services<'a> {
    pub config: &'a Config,
    pub client: &'a MemfaultClient,
    pub memory: &'a SettledMemory,
    pub clocks: &'a StallClocks,
    pub quarantine: Option<&'a Quarantine>,
    pub invocation: Invocation<'a>,
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

    fn route(&self, message: &ChunkMessage) -> Result<Route, RouteError> {
        let claims = Claims {
            topic: &message.topic,
            device_serial: message.device_serial.as_deref(),
            project_key: message.project_key.as_deref(),
        };
        self.config.router.resolve(claims)
    }

    /// Delivers items of a source that holds nothing behind a failing device.
    pub(super) async fn deliver(
        &self,
        items: Vec<Item>,
        log: DeliveryLog,
        metrics: &mut InvocationMetrics,
    ) -> Vec<Outcome> {
        self.deliver_within(items, log, None, metrics).await
    }

    async fn deliver_within(
        &self,
        items: Vec<Item>,
        log: DeliveryLog,
        stall_limit: Option<Duration>,
        metrics: &mut InvocationMetrics,
    ) -> Vec<Outcome> {
        let settings = Settings {
            batch_max_chunks: self.config.batch_max_chunks,
            upload_concurrency: self.config.upload_concurrency,
            stall_limit,
        };
        let environment = Environment {
            client: self.client,
            memory: self.memory,
            clocks: self.clocks,
        };
        delivery::deliver(environment, settings, log, items, self.deadline, metrics).await
    }

    /// Writes `records` to the quarantine queue and returns, in the same order, which were stored;
    /// a stored record is remembered as settled. Without a quarantine queue nothing is stored.
    pub(super) async fn set_aside(
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

/// A record of an SQS or Kinesis batch, as its adapter names it and would set it aside.
pub(super) trait BatchRecord {
    /// How the answer's `batchItemFailures` name it.
    fn item_id(&self) -> &str;
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

/// Which of a batch's undeliverable records are written to the quarantine queue now.
#[derive(Debug, Clone, Copy)]
pub(super) enum SetAsideReach {
    /// Every one: the source never sends a settled record again (SQS).
    EveryRecord,
    /// Those before the first record kept for a retry: the source resends everything from
    /// there, so those after it come back anyway (Kinesis).
    BeforeCheckpoint,
}

impl Services<'_> {
    /// Delivers a batch's items (one per record, in the same order), sets aside what can never
    /// be delivered within `reach`, and says of each record whether it is settled: delivered, or
    /// stored on the quarantine queue. The others are the batch's item failures.
    pub(super) async fn deliver_batch<R: BatchRecord>(
        &self,
        records: &[R],
        items: Vec<Item>,
        reach: SetAsideReach,
        metrics: &mut InvocationMetrics,
    ) -> (Vec<Outcome>, Vec<bool>) {
        let keys: Vec<_> = items.iter().map(|item| item.key).collect();
        let serials = device_serials(&items);
        // Only a stream holds records behind a failing device: there, it may stall.
        let stall_limit = match reach {
            SetAsideReach::EveryRecord => None,
            SetAsideReach::BeforeCheckpoint => Some(self.config.stall_limit),
        };
        let outcomes = self
            .deliver_within(items, DeliveryLog::EachAtDebug, stall_limit, metrics)
            .await;
        let reachable = match reach {
            SetAsideReach::EveryRecord => outcomes.len(),
            SetAsideReach::BeforeCheckpoint => outcomes
                .iter()
                .position(|outcome| matches!(outcome, Outcome::Kept(_)))
                .unwrap_or(outcomes.len()),
        };
        let mut to_set_aside = Vec::new();
        let mut set_aside_at = Vec::new();
        for (index, outcome) in outcomes.iter().enumerate() {
            let Outcome::SetAside(undeliverable) = outcome else {
                continue;
            };
            let record = &records[index];
            if let Undeliverable::Refused(refusal) = undeliverable {
                note_refusal(metrics, Some(record.item_id()), refusal);
            }
            let written_earlier = matches!(undeliverable, Undeliverable::SetAsideEarlier);
            if index < reachable && !written_earlier && record.may_set_aside() {
                set_aside_at.push(index);
                let failure = record.failure_record(serials[index].clone(), undeliverable);
                to_set_aside.push((failure, keys[index]));
            }
        }
        let stored = self.set_aside(to_set_aside, metrics).await;
        let mut settled: Vec<bool> = outcomes.iter().map(is_settled).collect();
        for (index, stored) in set_aside_at.into_iter().zip(stored) {
            settled[index] = stored;
        }
        metrics.chunks_undelivered += settled.iter().filter(|settled| !**settled).count() as u64;
        (outcomes, settled)
    }
}

/// The device each item goes to, for the quarantine queue's message groups.
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

/// Settled before any quarantine-queue write: delivered, or set aside by an earlier invocation.
fn is_settled(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Delivered(_) | Outcome::SetAside(Undeliverable::SetAsideEarlier)
    )
}

/// What the quarantine queue's record says about why a record was set aside.
pub(super) fn cause(undeliverable: &Undeliverable) -> Cause {
    Cause {
        condition: undeliverable.condition(),
        error_type: undeliverable.error_type(),
        error_message: undeliverable.message(),
    }
}

/// The log line and the count for one refused item; `item_id` names it within its batch.
pub(super) fn note_refusal(
    metrics: &mut InvocationMetrics,
    item_id: Option<&str>,
    refusal: &Refusal,
) {
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
pub(super) fn log_batch<'a>(
    metrics: &InvocationMetrics,
    source_name: &str,
    outcomes: impl Iterator<Item = (&'a str, &'a Outcome)>,
) {
    let slowest = outcomes
        .filter_map(|(item_id, outcome)| match outcome {
            Outcome::Delivered(Accepted::Now(delivery)) => Some((delivery.upstream, item_id)),
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
