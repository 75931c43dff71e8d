//! Setting records aside: what retrying cannot help is written to the quarantine queue with its
//! data, in the shape of Lambda's on-failure destination records, so that the quarantine queue
//! holds one kind of record whatever the mode and its replay mapping replays them all alike.
//!
//! Every write finishes by the invocation's deadline less MEMFAULT_DEADLINE_MARGIN_MS, with one
//! retry inside that time; a record whose write did not finish stays with its source (reported
//! as failed) and is written again by a later invocation, which a FIFO queue stores once. A
//! record too large for SQS goes to the stream failure bucket, when there is one, under a key derived
//! from its identity.

use std::collections::HashMap;
use std::num::NonZeroUsize;

use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::aws::StoreError;
use crate::config::TimeBudget;
use crate::quarantine_queue::{MAX_MESSAGE_BYTES, QuarantineQueue};
use crate::source_kind::SourceKind;
use crate::stream_failure_bucket::StreamFailureBucket;

/// The message group of records that name no valid device.
const UNROUTABLE_GROUP: &str = "unroutable";
/// SQS's limit for a message group id.
const MAX_GROUP_CHARS: usize = 128;

/// Why a record is set aside, in the words of Lambda's destination records.
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    /// `requestContext.condition`: `Undeliverable` or `Stalled`.
    pub condition: &'static str,
    pub error_type: String,
    pub error_message: String,
}

/// One record to set aside.
#[derive(Debug, Clone)]
pub(crate) struct FailureRecord {
    /// The record's identity in its source, e.g. `kinesis <stream ARN> <event id>`: the
    /// deduplication id is its digest.
    pub identity: String,
    /// The device, when the record names a valid one: a FIFO queue keeps its records in order.
    pub device_serial: Option<String>,
    /// The rule's event (`{"data", "topic", ...}`), which replay delivers; none when the record
    /// held no JSON object.
    pub request_payload: Option<Value>,
    pub origin: Origin,
    pub cause: Cause,
}

/// Where a record came from: its source, and what its adapter says of the item there, written
/// under the source's own key as Lambda's destination records do.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    source: SourceKind,
    details: Value,
}

impl Origin {
    /// `details` as JSON: plain strings and JSON values, which cannot fail to serialise.
    pub(crate) fn new(source: SourceKind, details: &impl Serialize) -> Self {
        Self {
            source,
            details: serde_json::to_value(details).unwrap_or_default(),
        }
    }
}

/// Whether a record handed to the quarantine is in it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Yes,
    /// Not written (no time left, refused, or behind a record of its device that was not), or
    /// there is no quarantine: it stays with its source.
    No,
}

/// The invocation that sets records aside, for the records' `requestContext`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestContext<'a> {
    pub request_id: &'a str,
    pub function_arn: &'a str,
}

pub(crate) struct Quarantine {
    queue: QuarantineQueue,
    bucket: Option<StreamFailureBucket>,
    budget: TimeBudget,
    concurrency: NonZeroUsize,
}

impl Quarantine {
    pub(crate) fn new(
        queue: QuarantineQueue,
        bucket: Option<StreamFailureBucket>,
        budget: TimeBudget,
        concurrency: NonZeroUsize,
    ) -> Self {
        Self {
            queue,
            bucket,
            budget,
            concurrency,
        }
    }

    /// Whether `arn` (an SQS record's `eventSourceARN`) names the quarantine queue.
    pub(crate) fn is_queue_arn(&self, arn: &str) -> bool {
        self.queue.is_queue_arn(arn)
    }

    /// Writes `records` and says of each, by the tag it came with, whether it was stored. One
    /// device's records are written one after another, in order; devices in parallel. Once a
    /// write of a device fails, its later records are not written: they stay with their source,
    /// behind the one that failed, so that the device's message group never holds them out of
    /// order.
    pub(crate) async fn set_aside<T>(
        &self,
        records: Vec<(T, FailureRecord)>,
        context: RequestContext<'_>,
        deadline: Instant,
    ) -> Vec<(T, Stored)> {
        let (tags, records): (Vec<T>, Vec<FailureRecord>) = records.into_iter().unzip();
        let records = &records;
        let give_up_at = self.budget.write_bound(deadline);
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            let group = message_group(record.device_serial.as_deref());
            let slot = *group_of.entry(group.clone()).or_insert_with(|| {
                groups.push((group, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(index);
        }
        let mut stored = vec![Stored::No; records.len()];
        let mut runs = futures_util::stream::iter(groups)
            .map(|(group, indices)| async move {
                let mut results = Vec::with_capacity(indices.len());
                let mut indices = indices.into_iter();
                for index in indices.by_ref() {
                    let written = self
                        .write(&records[index], &group, context, give_up_at)
                        .await;
                    let failed = written.is_err();
                    results.push((index, Written::Tried(written)));
                    if failed {
                        break;
                    }
                }
                results.extend(indices.map(|index| (index, Written::BehindFailedWrite)));
                results
            })
            .buffer_unordered(self.concurrency.get());
        while let Some(results) = runs.next().await {
            for (index, written) in results {
                if matches!(written, Written::Tried(Ok(()))) {
                    stored[index] = Stored::Yes;
                }
                log_write(&records[index], written);
            }
        }
        drop(runs);
        tags.into_iter().zip(stored).collect()
    }

    /// One record, with one more try if the first fails and time is left.
    async fn write(
        &self,
        record: &FailureRecord,
        group: &str,
        context: RequestContext<'_>,
        give_up_at: Instant,
    ) -> Result<(), StoreError> {
        let message = document(record, context);
        let deduplication_id = hex::encode(Sha256::digest(record.identity.as_bytes()));
        let store = || async {
            match &self.bucket {
                Some(bucket) if message.len() > MAX_MESSAGE_BYTES => {
                    let key = format!("quarantine/{group}/{deduplication_id}.json");
                    bucket.put(&key, &message, give_up_at).await
                }
                _ => {
                    self.queue
                        .send(&message, group, &deduplication_id, give_up_at)
                        .await
                }
            }
        };
        let first = store().await;
        match first {
            Err(StoreError::TooLarge(..) | StoreError::NoTimeLeft) | Ok(()) => first,
            Err(_) => store().await,
        }
    }
}

/// What became of one record's write.
enum Written {
    Tried(Result<(), StoreError>),
    /// Not tried: an earlier record of the same device failed to be written.
    BehindFailedWrite,
}

/// The one line of a record's write.
fn log_write(record: &FailureRecord, written: Written) {
    match written {
        Written::Tried(Ok(())) => tracing::warn!(
            outcome = "quarantined",
            item_id = %record.identity,
            device_serial = record.device_serial.as_deref(),
            chunks = 1,
            condition = record.cause.condition,
            error_type = %record.cause.error_type,
            "record set aside on the quarantine queue"
        ),
        Written::Tried(Err(error)) => tracing::error!(
            outcome = "quarantine_failed",
            item_id = %record.identity,
            device_serial = record.device_serial.as_deref(),
            chunks = 1,
            error_type = %record.cause.error_type,
            error = %error,
            "record could not be written to the quarantine queue; it stays with its source"
        ),
        Written::BehindFailedWrite => tracing::error!(
            outcome = "quarantine_failed",
            item_id = %record.identity,
            device_serial = record.device_serial.as_deref(),
            chunks = 1,
            error_type = %record.cause.error_type,
            "record not written: an earlier record of its device could not be written, and the queue keeps a device's order; it stays with its source"
        ),
    }
}

fn message_group(device_serial: Option<&str>) -> String {
    match device_serial {
        Some(serial) if !serial.is_empty() => serial.chars().take(MAX_GROUP_CHARS).collect(),
        _ => UNROUTABLE_GROUP.to_owned(),
    }
}

/// The record as Lambda's on-failure destinations write theirs.
fn document(record: &FailureRecord, context: RequestContext<'_>) -> String {
    let mut document = json!({
        "version": "1.0",
        "timestamp": now_rfc3339(),
        "requestContext": {
            "requestId": context.request_id,
            "functionArn": context.function_arn,
            "condition": record.cause.condition,
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "errorType": record.cause.error_type,
            "errorMessage": record.cause.error_message,
        },
    });
    document[record.origin.source.origin_key()] = record.origin.details.clone();
    if let Some(payload) = &record.request_payload {
        document["requestPayload"] = payload.clone();
    }
    document.to_string()
}

/// The time as Lambda's destination records write it, e.g. `2026-11-25T12:00:06.021Z`: always
/// three digits of milliseconds (RFC 3339 formatters drop trailing zeros).
fn now_rfc3339() -> String {
    rfc3339_millis(time::OffsetDateTime::now_utc())
}

fn rfc3339_millis(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_records_carry_an_rfc3339_time_in_milliseconds() {
        let at = |nanos: i128| time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
        assert_eq!(
            rfc3339_millis(at(1_764_072_006_020_999_999)),
            "2025-11-25T12:00:06.020Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_764_072_000_000_000_000)),
            "2025-11-25T12:00:00.000Z"
        );
        assert_eq!(now_rfc3339().len(), "2025-11-25T12:00:00.000Z".len());
    }

    /// The origin as the record's document holds it, under the one key of its source.
    fn origin_of(origin: Origin) -> Value {
        let record = FailureRecord {
            identity: "id".into(),
            device_serial: None,
            request_payload: None,
            origin,
            cause: Cause {
                condition: "Undeliverable",
                error_type: "Permanent.InvalidEvent".into(),
                error_message: "refused".into(),
            },
        };
        let context = RequestContext {
            request_id: "r",
            function_arn: "f",
        };
        let mut document: Value = serde_json::from_str(&document(&record, context)).unwrap();
        assert_eq!(
            document["responseContext"]["errorType"],
            "Permanent.InvalidEvent"
        );
        let keys = ["DirectInvocation", "SQSMessage", "KinesisRecord"];
        let present: Vec<&str> = keys
            .into_iter()
            .filter(|key| document.get(*key).is_some())
            .collect();
        assert_eq!(present.len(), 1, "{document}");
        document[present[0]].take()
    }

    #[test]
    fn origins_are_written_under_their_sources_key_in_lambdas_words() {
        let details = json!({"messageId": "m1"});
        assert_eq!(origin_of(Origin::new(SourceKind::Sqs, &details)), details);
        assert_eq!(
            origin_of(Origin::new(SourceKind::Direct, &json!({}))),
            json!({})
        );
    }

    #[test]
    fn message_groups_are_devices_within_sqs_limits() {
        assert_eq!(message_group(Some("dev-1")), "dev-1");
        assert_eq!(message_group(None), UNROUTABLE_GROUP);
        assert_eq!(message_group(Some("")), UNROUTABLE_GROUP);
        assert_eq!(message_group(Some(&"x".repeat(300))).len(), MAX_GROUP_CHARS);
    }
}
