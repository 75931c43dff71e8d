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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::services::{Batch, BatchRecord, cause, forward_batch};
use super::{BatchRefused, Envelope, ForwardError, Response, Services, envelope};
use crate::delivery::{Item, Refusal, Undeliverable};
use crate::event::{ChunkMessage, EventError, parse_rule_event, rule_json};
use crate::quarantine::{FailureRecord, Origin};
use crate::source_kind::SourceKind;

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
struct RecordHead<'a> {
    kinesis: SequenceHead,
    #[serde(rename = "eventSourceARN", borrow, default)]
    event_source_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct SequenceHead {
    #[serde(rename = "sequenceNumber")]
    sequence_number: String,
}

/// The Kinesis record a record came from.
#[derive(Debug, Clone, Serialize)]
struct KinesisOrigin {
    #[serde(rename = "sequenceNumber")]
    sequence_number: String,
    #[serde(flatten)]
    record: KinesisOriginRecord,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum KinesisOriginRecord {
    /// A record read as a Kinesis record.
    Read {
        #[serde(rename = "partitionKey")]
        partition_key: Option<String>,
        #[serde(rename = "eventSourceARN")]
        event_source_arn: String,
        #[serde(rename = "approximateArrivalTimestamp")]
        approximate_arrival_timestamp: Value,
        /// The record's data as it came, when it held no rule event to replay.
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<String>,
    },
    /// Not even readable as a Kinesis record: kept whole, as text, for inspection.
    Unread { record: String },
}

/// One record of the batch, in the batch's order, with what its failure record needs.
struct StreamRecord<'a> {
    sequence_number: String,
    stream: Cow<'a, str>,
    raw: &'a RawValue,
    contents: Contents<'a>,
}

/// What could be read of a record.
enum Contents<'a> {
    /// Not readable as a Kinesis record: kept whole, as text, for inspection.
    Unread,
    /// A Kinesis record, with the JSON its data holds, read once, when it holds any: the rule's
    /// event, or not one.
    Read {
        record: KinesisRecord<'a>,
        event: Option<Value>,
    },
}

impl StreamRecord<'_> {
    fn parsed(&self) -> Option<&KinesisRecord<'_>> {
        match &self.contents {
            Contents::Read { record, .. } => Some(record),
            Contents::Unread => None,
        }
    }

    /// Stream and shard position: what names the record across resends.
    fn identity(&self) -> String {
        let event_id = self.parsed().and_then(|record| record.event_id.as_deref());
        format!(
            "kinesis {} {}",
            self.stream,
            event_id.unwrap_or(&self.sequence_number)
        )
    }

    fn arrived(&self) -> Option<SystemTime> {
        let raw = self.parsed()?.kinesis.approximate_arrival_timestamp?;
        let seconds: f64 = serde_json::from_str(raw.get()).ok()?;
        // Any JSON may stand here (an edited failure record, a direct invoke): a timestamp that
        // is negative, not a number or beyond what the clock holds is no time at all.
        let since_epoch = Duration::try_from_secs_f64(seconds).ok()?;
        UNIX_EPOCH.checked_add(since_epoch)
    }

    /// The rule's event to replay: the record's JSON, when it is an object.
    fn request_payload(&self) -> Option<&Value> {
        self.event().filter(|event| event.is_object())
    }
}

impl BatchRecord for StreamRecord<'_> {
    fn item_id(&self) -> &str {
        &self.sequence_number
    }

    fn event(&self) -> Option<&Value> {
        match &self.contents {
            Contents::Read { event, .. } => event.as_ref(),
            Contents::Unread => None,
        }
    }

    fn failure_record(
        &self,
        device_serial: Option<String>,
        undeliverable: &Undeliverable,
    ) -> FailureRecord {
        let request_payload = self.request_payload().cloned();
        let record = match self.parsed() {
            Some(parsed) => KinesisOriginRecord::Read {
                partition_key: parsed.kinesis.partition_key.as_deref().map(str::to_owned),
                event_source_arn: self.stream.to_string(),
                approximate_arrival_timestamp: parsed
                    .kinesis
                    .approximate_arrival_timestamp
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
                    .unwrap_or(Value::Null),
                data: request_payload
                    .is_none()
                    .then(|| parsed.kinesis.data.to_string()),
            },
            None => KinesisOriginRecord::Unread {
                record: self.raw.get().to_owned(),
            },
        };
        FailureRecord {
            identity: self.identity(),
            device_serial,
            request_payload,
            origin: Origin::new(
                SourceKind::Kinesis,
                &KinesisOrigin {
                    sequence_number: self.sequence_number.clone(),
                    record,
                },
            ),
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
    forward_batch::<Kinesis>(services, records).await
}

struct Kinesis;

impl<'a> Batch<'a> for Kinesis {
    const KIND: SourceKind = SourceKind::Kinesis;
    type Record = StreamRecord<'a>;

    fn read(
        services: &Services<'_>,
        records: Vec<&'a RawValue>,
    ) -> Result<Vec<(StreamRecord<'a>, Item)>, BatchRefused> {
        let mut read = records
            .into_iter()
            .map(stream_record)
            .collect::<Result<Vec<_>, _>>()?;
        // A shard's batch arrives in order; sorting (stably) makes the order a guarantee of this
        // code rather than an assumption about the caller, replays included.
        read.sort_by(|(a, _), (b, _)| sequence_order(&a.sequence_number, &b.sequence_number));
        let entries = read.into_iter().map(|(record, message)| {
            let item = Item {
                content: message
                    .map_err(Refusal::from)
                    .and_then(|message| services.routed(message)),
                key: Some(services.record_key(&[&record.identity()])),
                arrived: record.arrived(),
            };
            (record, item)
        });
        Ok(entries.collect())
    }

    fn answer(failures: Vec<String>) -> Response {
        let mut response = KinesisEventResponse::default();
        for sequence_number in failures {
            response.add_failure(sequence_number);
        }
        Response::Kinesis(response)
    }
}

/// What a record's data holds: the rule's message, or why there is none.
type Read = Result<ChunkMessage, EventError>;

/// Reads one record, its data's JSON once. Failures are reported by sequence number, and
/// records are named by their stream: a batch with a record that has either missing (which
/// Lambda never sends) fails whole, before anything is sent.
fn stream_record(raw: &RawValue) -> Result<(StreamRecord<'_>, Read), BatchRefused> {
    let (parsed, head) = match serde_json::from_str::<KinesisRecord<'_>>(raw.get()) {
        Ok(parsed) => {
            let sequence_number = parsed.kinesis.sequence_number.clone();
            let stream = parsed.event_source_arn.clone();
            (Ok(parsed), (sequence_number, stream))
        }
        Err(error) => {
            let head = serde_json::from_str::<RecordHead<'_>>(raw.get()).ok();
            let unreadable = EventError::Unreadable {
                what: "Kinesis record",
                reason: error.to_string(),
            };
            let head = head.map_or((String::new(), None), |head| {
                (head.kinesis.sequence_number, head.event_source_arn)
            });
            (Err(unreadable), head)
        }
    };
    let (sequence_number, stream) = head;
    if !is_sequence_number(&sequence_number) {
        return Err(BatchRefused::new(
            SourceKind::Kinesis,
            "kinesis.sequenceNumber",
        ));
    }
    let Some(stream) = stream.filter(|stream| !stream.is_empty()) else {
        return Err(BatchRefused::new(SourceKind::Kinesis, "eventSourceARN"));
    };
    let (contents, message) = match parsed {
        Ok(record) => {
            let event =
                decoded(&record.kinesis).and_then(|data| rule_json(&data, "Kinesis record data"));
            let message = event
                .as_ref()
                .map_err(Clone::clone)
                .and_then(parse_rule_event);
            let event = event.ok();
            (Contents::Read { record, event }, message)
        }
        Err(unreadable) => (Contents::Unread, Err(unreadable)),
    };
    let record = StreamRecord {
        sequence_number,
        stream,
        raw,
        contents,
    };
    Ok((record, message))
}

/// Replays the S3 on-failure record of a batch: its `payload` is the batch's event as text.
pub(crate) async fn forward_failure_record(
    services: &Services<'_>,
    payload: &str,
) -> Result<Response, ForwardError> {
    match envelope(payload) {
        Envelope::Kinesis(records) => forward(services, records).await,
        _ => Err(ForwardError::batch(BatchRefused::malformed(
            "a Kinesis failure record whose payload is not a Kinesis batch",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_origin_names_the_record_in_lambdas_words() {
        let origin = |record| {
            let origin = KinesisOrigin {
                sequence_number: "7".into(),
                record,
            };
            serde_json::to_value(origin).unwrap()
        };
        let read = KinesisOriginRecord::Read {
            partition_key: None,
            event_source_arn: "arn:s".into(),
            approximate_arrival_timestamp: json!(1700000000.5),
            data: Some("AQ==".into()),
        };
        assert_eq!(
            origin(read),
            json!({
                "sequenceNumber": "7",
                "partitionKey": null,
                "eventSourceARN": "arn:s",
                "approximateArrivalTimestamp": 1700000000.5,
                "data": "AQ=="
            })
        );
        let unread = KinesisOriginRecord::Unread {
            record: "{\"kinesis\": 1}".into(),
        };
        assert_eq!(
            origin(unread),
            json!({"sequenceNumber": "7", "record": "{\"kinesis\": 1}"})
        );
    }

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
                stream: Cow::Borrowed("arn:aws:kinesis:eu-west-1:1:stream/s"),
                raw: &raw,
                contents: Contents::Read {
                    record: parsed,
                    event: None,
                },
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
