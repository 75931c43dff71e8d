//! SQS batches: queued mode's ingest queue, and replays of the quarantine queue. Every message is
//! delivered, set aside on the quarantine queue, or named in `batchItemFailures`; SQS deletes the
//! others and redelivers these after the visibility timeout, until the queue's redrive policy
//! moves them to its dead-letter queue.
//!
//! Messages that come from the quarantine queue itself (a replay) are never written back to it: a
//! chunk that still cannot be delivered is reported, and the redrive policy moves it to the
//! quarantine dead-letter queue.

use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::services::{Batch, BatchRecord, cause, forward_batch};
use super::{BatchRefused, ForwardError, Response, Services};
use crate::delivery::{Item, Refusal, Undeliverable};
use crate::event::{EventError, parse_rule_event, rule_json, unwrap_failure_record};
use crate::quarantine::{FailureRecord, Origin};
use crate::source_kind::SourceKind;

/// The parts of an SQS record the function reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
    #[serde(rename = "eventSourceARN", default)]
    event_source_arn: Option<String>,
}

/// One message of the batch, as far as its answer and its failure record need it.
struct Received {
    id: String,
    queue_arn: String,
    /// It came from the quarantine queue itself.
    replayed: bool,
    /// The body's text, and the JSON it holds.
    body: Result<(String, Value), Body>,
}

/// A body that holds no JSON: kept as it came (none when it was no text), for inspection.
struct Body(Option<String>);

/// The SQS message a record came from.
#[derive(Debug, Clone, Serialize)]
struct SqsOrigin {
    #[serde(rename = "messageId")]
    message_id: String,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: String,
    /// The body as it came, when it held no rule event to replay (null when it was no text).
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Option<String>>,
}

pub(crate) async fn forward(
    services: &Services<'_>,
    records: Vec<&RawValue>,
) -> Result<Response, ForwardError> {
    forward_batch::<Sqs>(services, records).await
}

struct Sqs;

impl Batch<'_> for Sqs {
    const KIND: SourceKind = SourceKind::Sqs;
    type Record = Received;

    fn read(
        services: &Services<'_>,
        records: Vec<&RawValue>,
    ) -> Result<Vec<(Received, Item)>, BatchRefused> {
        records
            .into_iter()
            .map(|record| received(services, record))
            .collect()
    }

    fn answer(failures: Vec<String>) -> Response {
        let mut response = SqsBatchResponse::default();
        for id in failures {
            response.add_failure(id);
        }
        Response::Sqs(response)
    }
}

/// Reads one message. Failures are reported by message ID, and replays are told apart by the
/// queue: a record without either could be neither reported nor safely deleted, so such a batch
/// fails whole, before anything is sent.
fn received(services: &Services<'_>, record: &RawValue) -> Result<(Received, Item), BatchRefused> {
    let message = serde_json::from_str::<Message<'_>>(record.get()).ok();
    let (id, queue_arn, body) = match message {
        Some(Message {
            message_id: Some(id),
            event_source_arn: Some(queue_arn),
            body,
        }) if !id.is_empty() && !queue_arn.is_empty() => (id, queue_arn, body),
        Some(Message {
            message_id: Some(id),
            ..
        }) if !id.is_empty() => return Err(BatchRefused::new(SourceKind::Sqs, "eventSourceARN")),
        _ => return Err(BatchRefused::new(SourceKind::Sqs, "messageId")),
    };
    let body = body
        .ok_or(EventError::MissingField("body"))
        .and_then(|body| {
            serde_json::from_str::<String>(body.get()).map_err(|error| EventError::Unreadable {
                what: "SQS message body",
                reason: error.to_string(),
            })
        });
    let (body, content) = match body {
        Ok(text) => match rule_json(text.as_bytes(), "SQS message body") {
            Ok(event) => {
                let content = parse_rule_event(&event).map_err(Refusal::from);
                (Ok((text, event)), content)
            }
            Err(error) => (Err(Body(Some(text))), Err(error.into())),
        },
        Err(error) => (Err(Body(None)), Err(error.into())),
    };
    let item = Item {
        content: content.and_then(|message| services.routed(message)),
        key: Some(services.record_key(&["sqs", &queue_arn, &id])),
        arrived: None,
    };
    let replayed = services.is_quarantine_queue(&queue_arn);
    let received = Received {
        id,
        queue_arn,
        replayed,
        body,
    };
    Ok((received, item))
}

impl BatchRecord for Received {
    fn item_id(&self) -> &str {
        &self.id
    }

    fn event(&self) -> Option<&Value> {
        self.body.as_ref().ok().map(|(_, event)| event)
    }

    fn may_set_aside(&self) -> bool {
        !self.replayed
    }

    fn failure_record(
        &self,
        device_serial: Option<String>,
        undeliverable: &Undeliverable,
    ) -> FailureRecord {
        let (request_payload, body) = match &self.body {
            Ok((text, event)) => {
                let payload = Some(unwrap_failure_record(event))
                    .filter(|payload| payload.is_object())
                    .cloned();
                // Not a rule event: kept as it came, for inspection.
                let body = payload.is_none().then(|| Some(text.clone()));
                (payload, body)
            }
            Err(Body(text)) => (None, Some(text.clone())),
        };
        FailureRecord {
            identity: format!("sqs {} {}", self.queue_arn, self.id),
            device_serial,
            request_payload,
            origin: Origin::new(
                SourceKind::Sqs,
                &SqsOrigin {
                    message_id: self.id.clone(),
                    event_source_arn: self.queue_arn.clone(),
                    body,
                },
            ),
            cause: cause(undeliverable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_origin_names_the_message_in_lambdas_words() {
        let origin = |body| {
            let origin = SqsOrigin {
                message_id: "m1".into(),
                event_source_arn: "arn:q".into(),
                body,
            };
            serde_json::to_value(origin).unwrap()
        };
        assert_eq!(
            origin(None),
            json!({"messageId": "m1", "eventSourceARN": "arn:q"})
        );
        assert_eq!(
            origin(Some(None)),
            json!({"messageId": "m1", "eventSourceARN": "arn:q", "body": null})
        );
        assert_eq!(
            origin(Some(Some("text".into()))),
            json!({"messageId": "m1", "eventSourceARN": "arn:q", "body": "text"})
        );
    }
}
