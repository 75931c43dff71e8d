//! Kinesis batches: stream mode. A shard is delivered in sequence-number order, and Lambda
//! resumes a failed batch at the **lowest** sequence number the function reports, resending
//! everything after it. So the answer names every record that must come back, the lowest of them
//! being the first record neither delivered nor set aside; records after it that this execution
//! environment already settled are answered from its memory when they come back.
//!
//! A record that can never be delivered (malformed, refused by validation, refused by Memfault
//! when sent alone, or a device stalled past the stall limit) would hold the checkpoint, and so
//! every device on its shard, until the mapping discards it. Such records are written to the
//! quarantine queue with their data instead, and the checkpoint moves past them. Only records
//! before the checkpoint are written: those after it come back with the retry anyway.
//!
//! The event source mapping's S3 on-failure record of a batch (the batch as escaped JSON in
//! `payload`) is read here too, so that a batch the mapping gave up on replays through the same
//! code.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::streams::KinesisEventResponse;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::services::{BatchRecord, SetAsideReach, cause, log_batch};
use super::{BatchRefused, Envelope, ForwardError, Response, Services, envelope};
use crate::delivery::{Item, Refusal, Undeliverable};
use crate::event::{EventError, parse_rule_json};
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::quarantine::{FailureRecord, Origin};

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
    #[serde(rename = "eventID", borrow, default)]
    event_id: Option<Cow<'a, str>>,
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

/// One record of the batch, in the batch's order, with what its failure record needs.
struct StreamRecord<'a> {
    sequence_number: String,
    raw: &'a RawValue,
    parsed: Option<KinesisRecord<'a>>,
    /// The rule's event the record's data holds, when it is a JSON object.
    event: Option<Value>,
}

impl StreamRecord<'_> {
    /// Stream and shard position: what names the record across resends.
    fn identity(&self) -> String {
        let parsed = self.parsed.as_ref();
        let stream = parsed.and_then(|record| record.event_source_arn.as_deref());
        let event_id = parsed.and_then(|record| record.event_id.as_deref());
        format!(
            "kinesis {} {}",
            stream.unwrap_or_default(),
            event_id.unwrap_or(&self.sequence_number)
        )
    }

    fn arrived(&self) -> Option<SystemTime> {
        let raw = self
            .parsed
            .as_ref()?
            .kinesis
            .approximate_arrival_timestamp?;
        let seconds: f64 = serde_json::from_str(raw.get()).ok()?;
        // Any JSON may stand here (an edited failure record, a direct invoke): a timestamp that
        // is negative, not a number or beyond what the clock holds is no time at all.
        let since_epoch = Duration::try_from_secs_f64(seconds).ok()?;
        UNIX_EPOCH.checked_add(since_epoch)
    }
}

impl BatchRecord for StreamRecord<'_> {
    fn item_id(&self) -> &str {
        &self.sequence_number
    }

    fn failure_record(
        &self,
        device_serial: Option<String>,
        undeliverable: &Undeliverable,
    ) -> FailureRecord {
        let mut origin = json!({ "sequenceNumber": self.sequence_number });
        match &self.parsed {
            Some(parsed) => {
                origin["partitionKey"] = json!(parsed.kinesis.partition_key);
                origin["eventSourceARN"] = json!(parsed.event_source_arn);
                origin["approximateArrivalTimestamp"] = parsed
                    .kinesis
                    .approximate_arrival_timestamp
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
                    .unwrap_or(Value::Null);
                if self.event.is_none() {
                    origin["data"] = json!(parsed.kinesis.data);
                }
            }
            // Not even readable as a Kinesis record: keep it whole, as text, for inspection.
            None => origin["record"] = json!(self.raw.get()),
        }
        FailureRecord {
            identity: self.identity(),
            device_serial,
            request_payload: self.event.clone(),
            origin: Origin::Kinesis(origin),
            cause: cause(undeliverable),
        }
    }
}

fn decoded(data: &KinesisData<'_>) -> Result<Vec<u8>, EventError> {
    base64::engine::general_purpose::STANDARD
        .decode(data.data.as_bytes())
        .map_err(|error| EventError::Unreadable {
            what: "Kinesis record data",
            reason: format!("not base64: {error}"),
        })
}

pub(crate) async fn forward(
    services: &Services<'_>,
    records: Vec<&RawValue>,
) -> Result<Response, ForwardError> {
    let mut entries = Vec::with_capacity(records.len());
    for raw in records {
        let (record, message) = match serde_json::from_str::<KinesisRecord<'_>>(raw.get()) {
            Ok(parsed) => {
                let data = decoded(&parsed.kinesis);
                let message = data
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|data| parse_rule_json(data, "Kinesis record data"));
                let event = data
                    .ok()
                    .and_then(|data| serde_json::from_slice::<Value>(&data).ok())
                    .filter(Value::is_object);
                let record = StreamRecord {
                    sequence_number: parsed.kinesis.sequence_number.clone(),
                    raw,
                    parsed: Some(parsed),
                    event,
                };
                (record, message)
            }
            Err(error) => {
                let head = serde_json::from_str::<RecordHead>(raw.get()).ok();
                let unreadable = EventError::Unreadable {
                    what: "Kinesis record",
                    reason: error.to_string(),
                };
                let record = StreamRecord {
                    sequence_number: head
                        .map(|head| head.kinesis.sequence_number)
                        .unwrap_or_default(),
                    raw,
                    parsed: None,
                    event: None,
                };
                (record, Err(unreadable))
            }
        };
        // Failures are reported by sequence number: a batch with a record that has none (which
        // Lambda never sends) fails whole, before anything is sent.
        if !is_sequence_number(&record.sequence_number) {
            return Err(BatchRefused::new("Kinesis", "kinesis.sequenceNumber").into());
        }
        entries.push((record, message));
    }
    // A shard's batch arrives in order; sorting (stably) makes the order a guarantee of this
    // code rather than an assumption about the caller, replays included.
    entries.sort_by(|(a, _), (b, _)| sequence_order(&a.sequence_number, &b.sequence_number));
    let mut stream_records = Vec::with_capacity(entries.len());
    let mut items = Vec::with_capacity(entries.len());
    for (record, message) in entries {
        items.push(Item {
            content: message
                .map_err(Refusal::from)
                .and_then(|message| services.routed(message)),
            key: Some(services.memory.key(&[&record.identity()])),
            arrived: record.arrived(),
        });
        stream_records.push(record);
    }
    let mut metrics = InvocationMetrics::default();
    let (outcomes, settled) = services
        .deliver_batch(
            &stream_records,
            items,
            SetAsideReach::BeforeCheckpoint,
            &mut metrics,
        )
        .await;
    let mut response = KinesisEventResponse::default();
    for (record, settled) in stream_records.iter().zip(settled) {
        if !settled {
            response.add_failure(record.sequence_number.clone());
        }
    }
    let item_ids = stream_records
        .iter()
        .map(|record| record.sequence_number.as_str());
    log_batch(&metrics, "Kinesis", item_ids.zip(&outcomes));
    emit_metrics(
        services.config.metrics_namespace.as_deref(),
        "Stream",
        &metrics,
    );
    Ok(Response::Kinesis(response))
}

/// Replays the S3 on-failure record of a batch: its `payload` is the batch's event as text.
pub(crate) async fn forward_failure_record(
    services: &Services<'_>,
    payload: &str,
) -> Result<Response, ForwardError> {
    match envelope(payload) {
        Envelope::Kinesis(records) => forward(services, records).await,
        _ => Err(BatchRefused::new("Kinesis failure record", "payload").into()),
    }
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
    fn an_arrival_time_the_clock_cannot_hold_is_no_time_rather_than_a_panic() {
        let arrived = |timestamp: &str| {
            let text = format!(
                r#"{{"kinesis": {{"sequenceNumber": "1", "data": "", "approximateArrivalTimestamp": {timestamp}}}}}"#
            );
            let raw: Box<RawValue> = serde_json::from_str(&text).unwrap();
            let parsed = serde_json::from_str::<KinesisRecord<'_>>(raw.get()).unwrap();
            let record = StreamRecord {
                sequence_number: "1".to_owned(),
                raw: &raw,
                parsed: Some(parsed),
                event: None,
            };
            record.arrived()
        };
        for unusable in [
            "1e19",
            "1e40",
            "1.7976931348623157e308",
            "-1",
            "-0.5",
            "\"soon\"",
            "null",
            "[]",
            "{}",
        ] {
            assert_eq!(arrived(unusable), None, "{unusable}");
        }
        assert_eq!(
            arrived("1700000000.5"),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
        );
    }
}
