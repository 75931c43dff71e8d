//! SQS batches: queued mode's ingest queue, and replays of the quarantine queue. Every message is
//! delivered, set aside on the quarantine queue, or named in `batchItemFailures`; SQS deletes the
//! others and redelivers these after the visibility timeout, until the queue's redrive policy
//! moves them to its dead-letter queue.
//!
//! Messages that come from the quarantine queue itself (a replay) are never written back to it: a
//! chunk that still cannot be delivered is reported, and the redrive policy moves it to the
//! quarantine dead-letter queue.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::services::{BatchRecord, SetAsideReach, cause, log_batch};
use super::{BatchRefused, ForwardError, Response, Services};
use crate::delivery::{Item, Refusal, Undeliverable};
use crate::event::{EventError, parse_rule_json, unwrap_failure_record};
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::quarantine::{FailureRecord, Origin};
use aws_lambda_events::event::sqs::SqsBatchResponse;

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
    body: Result<String, EventError>,
}

pub(crate) async fn forward(
    services: &Services<'_>,
    records: Vec<&RawValue>,
) -> Result<Response, ForwardError> {
    // Failures are reported by message ID. A record without one could be neither reported nor
    // safely deleted, so such a batch fails whole, before anything is sent.
    let mut received = Vec::with_capacity(records.len());
    let mut items = Vec::with_capacity(records.len());
    for record in records {
        let message = serde_json::from_str::<Message<'_>>(record.get()).ok();
        let Some(id) = message
            .as_ref()
            .and_then(|message| message.message_id.clone())
            .filter(|id| !id.is_empty())
        else {
            return Err(BatchRefused::new("SQS", "messageId").into());
        };
        let queue_arn = message
            .as_ref()
            .and_then(|message| message.event_source_arn.clone())
            .unwrap_or_default();
        let body = message
            .and_then(|message| message.body)
            .ok_or(EventError::MissingField("body"))
            .and_then(|body| {
                serde_json::from_str::<String>(body.get()).map_err(|error| EventError::Unreadable {
                    what: "SQS message body",
                    reason: error.to_string(),
                })
            });
        let content = body
            .clone()
            .and_then(|body| parse_rule_json(body.as_bytes(), "SQS message body"))
            .map_err(Refusal::from)
            .and_then(|message| services.routed(message));
        items.push(Item {
            content,
            key: Some(services.memory.key(&["sqs", &queue_arn, &id])),
            arrived: None,
        });
        let replayed = services
            .config
            .quarantine_queue
            .as_ref()
            .is_some_and(|queue| queue.url.is_queue_arn(&queue_arn));
        received.push(Received {
            id,
            queue_arn,
            replayed,
            body,
        });
    }
    let mut metrics = InvocationMetrics::default();
    let (outcomes, settled) = services
        .deliver_batch(&received, items, SetAsideReach::EveryRecord, &mut metrics)
        .await;
    let mut response = SqsBatchResponse::default();
    for (message, settled) in received.iter().zip(settled) {
        if !settled {
            response.add_failure(message.id.clone());
        }
    }
    log_batch(
        &metrics,
        "SQS",
        received
            .iter()
            .map(|message| message.id.as_str())
            .zip(&outcomes),
    );
    emit_metrics(
        services.config.metrics_namespace.as_deref(),
        "Queued",
        &metrics,
    );
    Ok(Response::Sqs(response))
}

impl BatchRecord for Received {
    fn item_id(&self) -> &str {
        &self.id
    }

    fn may_set_aside(&self) -> bool {
        !self.replayed
    }

    fn failure_record(
        &self,
        device_serial: Option<String>,
        undeliverable: &Undeliverable,
    ) -> FailureRecord {
        let message = self;
        let event = message
            .body
            .as_ref()
            .ok()
            .and_then(|body| serde_json::from_str::<Value>(body).ok());
        let request_payload = event
            .as_ref()
            .map(|event| unwrap_failure_record(event).clone())
            .filter(Value::is_object);
        let mut origin = json!({ "messageId": message.id, "eventSourceARN": message.queue_arn });
        if request_payload.is_none() {
            // Not a rule event: kept as it came, for inspection.
            origin["body"] = json!(message.body.as_ref().ok());
        }
        FailureRecord {
            identity: format!("sqs {} {}", message.queue_arn, message.id),
            device_serial,
            request_payload,
            origin: Origin::Sqs(origin),
            cause: cause(undeliverable),
        }
    }
}
