//! How an invocation's envelope is recognised, from the JSON text itself.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::source_kind::SourceKind;

/// What an invocation's payload is. Batches borrow their records from the payload text.
#[derive(Debug)]
pub(crate) enum Envelope<'a> {
    /// Anything that is not one of the batches below: an IoT rule event or a failure record of
    /// one, delivered or refused as a single chunk.
    Direct,
    Sqs(Vec<&'a RawValue>),
    Kinesis(Vec<&'a RawValue>),
    /// An event source mapping's S3 on-failure record: a Kinesis batch as escaped JSON text.
    KinesisFailureRecord(Cow<'a, str>),
    /// A batch that is not a readable one: records of a known source mixed with others, or a
    /// failure record without its batch. Refused whole, as what it says.
    Malformed(&'static str),
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
/// A `Records` array in which some records name SQS or Kinesis but not all name the same one,
/// and a `KinesisBatchInfo` without a text `payload`, are malformed batches, not events.
///
/// Only the envelope's own fields are read here; whatever else the payload holds, however
/// deeply nested, is skipped without being parsed.
pub(crate) fn envelope(payload: &str) -> Envelope<'_> {
    // Only an object is an envelope: serde would read a struct from an array too.
    if !payload.trim_start().starts_with('{') {
        return Envelope::Direct;
    }
    let Ok(head) = serde_json::from_str::<Head<'_>>(payload) else {
        return Envelope::Direct;
    };
    if head.kinesis_batch_info.is_some() {
        return match head
            .payload
            .and_then(|payload| serde_json::from_str::<Cow<'_, str>>(payload.get()).ok())
        {
            Some(text) => Envelope::KinesisFailureRecord(text),
            None => {
                Envelope::Malformed("a Kinesis failure record without its batch as text in payload")
            }
        };
    }
    let Some(records) = head
        .records
        .and_then(|records| serde_json::from_str::<Vec<&RawValue>>(records.get()).ok())
    else {
        return Envelope::Direct;
    };
    let sources: Vec<Option<Cow<'_, str>>> =
        records.iter().map(|record| event_source(record)).collect();
    let kind = |source: &Option<Cow<'_, str>>| {
        SourceKind::BATCHES.into_iter().find(|kind| {
            kind.event_source()
                .is_some_and(|name| Some(name) == source.as_deref())
        })
    };
    let Some((first, kind)) = sources
        .iter()
        .find_map(|source| Some((source, kind(source)?)))
    else {
        return Envelope::Direct;
    };
    if sources.iter().any(|source| source != first) {
        return Envelope::Malformed(
            "records of an SQS or Kinesis batch with other eventSource values",
        );
    }
    match kind {
        SourceKind::Sqs => Envelope::Sqs(records),
        SourceKind::Kinesis => Envelope::Kinesis(records),
        SourceKind::Direct => Envelope::Direct,
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
            Envelope::Malformed(_) => "malformed batch",
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
            json!({"Records": [{"eventSource": "aws:s3"}, {}]}),
            json!("a string"),
            json!([1, 2]),
        ] {
            assert_eq!(shape(event.clone()), "direct", "{event}");
        }
    }

    #[test]
    fn a_batch_that_is_not_a_readable_one_is_malformed() {
        for event in [
            json!({"Records": [{"eventSource": "aws:sqs"}, {"eventSource": "aws:kinesis"}]}),
            json!({"Records": [{"eventSource": "aws:sqs"}, {}]}),
            json!({"Records": [{"eventSource": "aws:s3"}, {"eventSource": "aws:kinesis"}]}),
            json!({"KinesisBatchInfo": {}, "payload": {"not": "text"}}),
            json!({"KinesisBatchInfo": {}}),
        ] {
            assert_eq!(shape(event.clone()), "malformed batch", "{event}");
        }
    }

    #[test]
    fn hostile_nesting_elsewhere_does_not_stop_recognition() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = format!(r#"{{"junk": {deep}, "Records": [{{"eventSource": "aws:sqs"}}]}}"#);
        assert!(matches!(envelope(&text), Envelope::Sqs(records) if records.len() == 1));
    }
}
