//! SQS batches: queued mode's ingest queue, and replays of the failure queue. Every message is
//! delivered or named in `batchItemFailures`; SQS deletes the others and redelivers these after
//! the visibility timeout, until the queue's redrive policy moves them to its dead-letter queue.

use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::delivery::Outcome;
use crate::event::{EventError, parse_rule_json};
use crate::handler::{ForwardError, Forwarder, log_batch, note_refusal, refuse_batch};
use crate::observability::{InvocationMetrics, emit_metrics};

/// The parts of an SQS record the function reads; everything else is skipped unparsed.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

pub async fn forward(
    forwarder: &Forwarder,
    records: Vec<&RawValue>,
    deadline: Instant,
) -> Result<SqsBatchResponse, ForwardError> {
    // Failures are reported by message ID. A record without one could be neither reported nor
    // safely deleted, so such a batch fails whole, before anything is sent.
    let mut ids = Vec::with_capacity(records.len());
    let mut items = Vec::with_capacity(records.len());
    for record in records {
        let message = serde_json::from_str::<Message<'_>>(record.get()).ok();
        let Some(id) = message
            .as_ref()
            .and_then(|message| message.message_id.clone())
            .filter(|id| !id.is_empty())
        else {
            return Err(refuse_batch("SQS", "messageId"));
        };
        let body = message
            .and_then(|message| message.body)
            .ok_or(EventError::MissingField("body"))
            .and_then(|body| {
                serde_json::from_str::<String>(body.get()).map_err(|error| EventError::Unreadable {
                    what: "SQS message body",
                    reason: error.to_string(),
                })
            })
            .and_then(|body| parse_rule_json(body.as_bytes(), "SQS message body"));
        ids.push(id);
        items.push(forwarder.routed(body));
    }

    let mut metrics = InvocationMetrics::default();
    let outcomes = forwarder.deliver(items, true, deadline, &mut metrics).await;
    let mut response = SqsBatchResponse::default();
    for (id, outcome) in ids.iter().zip(&outcomes) {
        match outcome {
            Outcome::Delivered(_) => continue,
            Outcome::Refused(error) => note_refusal(&mut metrics, Some(id), error),
            Outcome::Failed(_) | Outcome::HeldBack => {}
        }
        metrics.chunks_undelivered += 1;
        response.add_failure(id.clone());
    }
    log_batch(
        &metrics,
        "SQS",
        ids.iter().map(String::as_str).zip(&outcomes),
    );
    emit_metrics(
        forwarder.config().metrics_namespace.as_deref(),
        "Queued",
        &metrics,
    );
    Ok(response)
}
