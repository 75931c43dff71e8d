//! Kinesis batches: stream mode. A shard is delivered in sequence-number order, and Lambda
//! resumes a failed batch at the **lowest** sequence number the function reports, resending
//! everything after it. So the answer names every record that must come back, the lowest of them
//! being the first record not delivered; records of other devices after it are sent again on the
//! retry (Memfault tolerates duplicates).
//!
//! A record that can never be delivered (malformed, refused by validation, refused by Memfault
//! with a 4xx) would hold the checkpoint, and so every device on its shard, until the mapping
//! discards it. Such records are written to the failure queue with their data instead, when one
//! is configured, and the checkpoint moves past them.
//!
//! The event source mapping's S3 on-failure record of a batch (the batch as escaped JSON in
//! `payload`) is read here too, so that a batch the mapping gave up on replays through the same
//! code.

use std::borrow::Cow;
use std::cmp::Ordering;

use aws_lambda_events::event::streams::KinesisEventResponse;
use base64::Engine as _;
use futures_util::StreamExt as _;
use lambda_runtime::Context;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::delivery::Outcome;
use crate::event::{EventError, parse_rule_json};
use crate::failure_queue::FailureQueue;
use crate::handler::{ForwardError, Forwarder, log_batch, note_refusal, refuse_batch};
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::source::{Envelope, envelope};

/// Kinesis sequence numbers are decimal strings of up to 129 digits (Kinesis API `Record`).
const MAX_SEQUENCE_DIGITS: usize = 129;

fn is_sequence_number(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_SEQUENCE_DIGITS
        && text.bytes().all(|byte| byte.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

/// Numeric order of two valid sequence numbers: without leading zeros, the longer one is larger.
fn sequence_order(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// The parts of a Kinesis record the function uses, read leniently on purpose: a field it does
/// not use (a timestamp's precision, an encryption type added later) must not make a record
/// unreadable, and so undeliverable. (`aws_lambda_events`' record type checks every field.)
#[derive(Deserialize)]
struct KinesisRecord<'a> {
    #[serde(borrow)]
    kinesis: KinesisData<'a>,
    #[serde(rename = "eventSourceARN", borrow, default)]
    event_source_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct KinesisData<'a> {
    #[serde(rename = "sequenceNumber")]
    sequence_number: String,
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(rename = "partitionKey", borrow, default)]
    partition_key: Option<Cow<'a, str>>,
    #[serde(rename = "approximateArrivalTimestamp", borrow, default)]
    approximate_arrival_timestamp: Option<&'a RawValue>,
}

impl KinesisData<'_> {
    fn decoded(&self) -> Result<Vec<u8>, EventError> {
        base64::engine::general_purpose::STANDARD
            .decode(self.data.as_bytes())
            .map_err(|error| EventError::Unreadable {
                what: "Kinesis record data",
                reason: format!("not base64: {error}"),
            })
    }
}

/// Enough of a record to report it, for a record that cannot be read as a whole.
#[derive(Deserialize)]
struct RecordHead {
    kinesis: SequenceHead,
}

#[derive(Deserialize)]
struct SequenceHead {
    #[serde(rename = "sequenceNumber")]
    sequence_number: String,
}

/// One record of the batch, in the batch's order.
struct StreamRecord<'a> {
    sequence_number: String,
    raw: &'a RawValue,
}

pub async fn forward(
    forwarder: &Forwarder,
    records: Vec<&RawValue>,
    deadline: Instant,
    context: &Context,
) -> Result<KinesisEventResponse, ForwardError> {
    let mut entries = Vec::with_capacity(records.len());
    for raw in records {
        let (sequence_number, item) = match serde_json::from_str::<KinesisRecord<'_>>(raw.get()) {
            Ok(record) => {
                let message = record
                    .kinesis
                    .decoded()
                    .and_then(|data| parse_rule_json(&data, "Kinesis record data"));
                (record.kinesis.sequence_number, forwarder.routed(message))
            }
            Err(error) => {
                let head = serde_json::from_str::<RecordHead>(raw.get()).ok();
                let unreadable = EventError::Unreadable {
                    what: "Kinesis record",
                    reason: error.to_string(),
                };
                (
                    head.map(|head| head.kinesis.sequence_number)
                        .unwrap_or_default(),
                    Err(unreadable.into()),
                )
            }
        };
        // Failures are reported by sequence number: a batch with a record that has none (which
        // Lambda never sends) fails whole, before anything is sent.
        if !is_sequence_number(&sequence_number) {
            return Err(refuse_batch("Kinesis", "kinesis.sequenceNumber"));
        }
        entries.push((
            StreamRecord {
                sequence_number,
                raw,
            },
            item,
        ));
    }
    // A shard's batch arrives in order; sorting (stably) makes the order a guarantee of this
    // code rather than an assumption about the caller, replays included.
    entries.sort_by(|(a, _), (b, _)| sequence_order(&a.sequence_number, &b.sequence_number));
    let (stream_records, items): (Vec<StreamRecord<'_>>, Vec<_>) = entries.into_iter().unzip();

    let mut metrics = InvocationMetrics::default();
    let outcomes = forwarder.deliver(items, true, deadline, &mut metrics).await;
    let quarantined = match forwarder.failure_queue() {
        Some(queue) => {
            quarantine(
                queue,
                forwarder.config().upload_concurrency,
                &stream_records,
                &outcomes,
                deadline,
                context,
            )
            .await
        }
        None => vec![false; outcomes.len()],
    };

    let mut response = KinesisEventResponse::default();
    for ((record, outcome), quarantined) in stream_records.iter().zip(&outcomes).zip(quarantined) {
        if let Outcome::Refused(error) = outcome {
            note_refusal(&mut metrics, Some(&record.sequence_number), error);
        }
        if quarantined {
            metrics.chunks_quarantined += 1;
        } else if !matches!(outcome, Outcome::Delivered(_)) {
            metrics.chunks_undelivered += 1;
            response.add_failure(record.sequence_number.clone());
        }
    }
    let item_ids = stream_records
        .iter()
        .map(|record| record.sequence_number.as_str());
    log_batch(&metrics, "Kinesis", item_ids.zip(&outcomes));
    emit_metrics(
        forwarder.config().metrics_namespace.as_deref(),
        "Stream",
        &metrics,
    );
    Ok(response)
}

/// Replays the S3 on-failure record of a batch: its `payload` is the batch's event as text.
pub async fn forward_failure_record(
    forwarder: &Forwarder,
    payload: &str,
    deadline: Instant,
    context: &Context,
) -> Result<KinesisEventResponse, ForwardError> {
    match envelope(payload) {
        Envelope::Kinesis(records) => forward(forwarder, records, deadline, context).await,
        _ => Err(refuse_batch("Kinesis failure record", "payload")),
    }
}

/// Writes the records that can never be delivered to the failure queue, and says which ones
/// it wrote. Only records before the first one that must be retried are written: those after
/// it come back with the retry anyway, and writing them now would write them again each time.
async fn quarantine(
    queue: &FailureQueue,
    concurrency: usize,
    records: &[StreamRecord<'_>],
    outcomes: &[Outcome],
    deadline: Instant,
    context: &Context,
) -> Vec<bool> {
    let checkpoint = outcomes
        .iter()
        .position(|outcome| !matches!(outcome, Outcome::Delivered(_)) && !outcome.is_permanent())
        .unwrap_or(outcomes.len());
    let mut quarantined = vec![false; outcomes.len()];
    let permanent = (0..checkpoint).filter(|&index| outcomes[index].is_permanent());
    let mut sends = futures_util::stream::iter(permanent)
        .map(|index| {
            let message = failure_record(&records[index], &outcomes[index], context);
            async move { (index, queue.send(&message, deadline).await) }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((index, sent)) = sends.next().await {
        let record = &records[index];
        let error = outcome_error(&outcomes[index]);
        match sent {
            Ok(()) => {
                quarantined[index] = true;
                tracing::warn!(
                    outcome = "quarantined",
                    item_id = %record.sequence_number,
                    chunks = 1,
                    error_type = %error.0,
                    "undeliverable record written to the failure queue"
                );
            }
            Err(failure) => tracing::error!(
                outcome = "quarantine_failed",
                item_id = %record.sequence_number,
                error_type = %error.0,
                error = %failure,
                "undeliverable record could not be written to the failure queue; it stays in the stream"
            ),
        }
    }
    quarantined
}

/// The `errorType` and message of a record that was not delivered.
fn outcome_error(outcome: &Outcome) -> (String, String) {
    match outcome {
        Outcome::Refused(error) => (error.error_type(), error.to_string()),
        Outcome::Failed(error) => {
            let error = ForwardError::Upload(error.clone());
            (error.error_type(), error.to_string())
        }
        Outcome::Delivered(_) | Outcome::HeldBack => {
            (String::new(), "not delivered yet".to_owned())
        }
    }
}

/// A failure record in the shape of Lambda's on-failure destination records, so that the
/// failure queue holds one kind of record whatever the mode: the rule's event under
/// `requestPayload` (what replay delivers), the error, and where the record came from. Data that
/// is not a JSON object is kept as the record's base64 `data` instead, for inspection.
fn failure_record(record: &StreamRecord<'_>, outcome: &Outcome, context: &Context) -> String {
    let (error_type, error_message) = outcome_error(outcome);
    let parsed = serde_json::from_str::<KinesisRecord<'_>>(record.raw.get()).ok();
    let mut origin = json!({ "sequenceNumber": record.sequence_number });
    let mut payload = None;
    if let Some(parsed) = &parsed {
        origin["partitionKey"] = json!(parsed.kinesis.partition_key);
        origin["eventSourceARN"] = json!(parsed.event_source_arn);
        origin["approximateArrivalTimestamp"] = parsed
            .kinesis
            .approximate_arrival_timestamp
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or(Value::Null);
        let event = parsed
            .kinesis
            .decoded()
            .ok()
            .and_then(|data| serde_json::from_slice::<Value>(&data).ok());
        match event {
            Some(event) if event.is_object() => payload = Some(event),
            _ => origin["data"] = json!(parsed.kinesis.data),
        }
    } else {
        // Not even readable as a Kinesis record: keep it whole, as text, for inspection.
        origin["record"] = json!(record.raw.get());
    }
    let mut document = json!({
        "version": "1.0",
        "timestamp": now_rfc3339(),
        "requestContext": {
            "requestId": context.request_id,
            "functionArn": context.invoked_function_arn,
            "condition": "Undeliverable",
            "approximateInvokeCount": 1,
        },
        "responseContext": {
            "errorType": error_type,
            "errorMessage": error_message,
        },
        "KinesisRecord": origin,
    });
    if let Some(payload) = payload {
        document["requestPayload"] = payload;
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
    fn sequence_numbers_are_decimal_strings_in_numeric_order() {
        for valid in [
            "0",
            "7",
            "49590338271490256608559692538361571095921575989136588898",
        ] {
            assert!(is_sequence_number(valid), "{valid}");
        }
        for invalid in ["", "007", "12a", "-1", " 1", &"9".repeat(130)] {
            assert!(!is_sequence_number(invalid), "{invalid:?}");
        }
        assert_eq!(sequence_order("9", "10"), Ordering::Less);
        assert_eq!(sequence_order("100", "99"), Ordering::Greater);
        assert_eq!(sequence_order("123", "124"), Ordering::Less);
        assert_eq!(sequence_order("55", "55"), Ordering::Equal);
    }

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
}
