//! Direct invocations: one IoT rule event (or Lambda's on-failure record of one) per
//! invocation. The answer is the delivery; a chunk that can never be delivered is written to the
//! quarantine queue and answered as set aside, so that Lambda spends its retries only on what can
//! succeed; anything else is an error whose `errorType` says whether trying again can help.

use serde_json::Value;

use super::services::{cause, note_refusal};
use super::{Delivered, DeliveredEarlier, ForwardError, Response, Services, SetAside};
use crate::delivery::{Item, Outcome, Refusal, ToSetAside, Undeliverable};
use crate::event::{EventError, parse_rule_event, unwrap_failure_record};
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::quarantine::{FailureRecord, Origin, Stored};
use crate::settled::{RecordKey, Settlement};
use crate::source_kind::SourceKind;

/// The one event of the invocation, as far as its answer and its failure record need it.
struct Direct {
    /// The event's JSON, read once.
    event: Option<Value>,
    identity: String,
    key: Option<RecordKey>,
    device_serial: Option<String>,
    bytes: usize,
}

pub(crate) async fn forward(
    services: &Services<'_>,
    payload: &str,
) -> Result<Response, ForwardError> {
    let mut metrics = InvocationMetrics::default();
    let (direct, item) = read(services, payload);
    let outcome = services
        .deliver(vec![item], SourceKind::Direct, &mut metrics)
        .await
        .pop()
        .expect("one outcome per item");
    let result = answer(services, direct, outcome, &mut metrics).await;
    if result.is_err() {
        metrics.chunks_undelivered += 1;
    }
    emit_metrics(
        services.config.metrics_namespace(),
        SourceKind::Direct,
        &metrics,
    );
    result
}

fn read(services: &Services<'_>, payload: &str) -> (Direct, Item) {
    let event = serde_json::from_str::<Value>(payload).map_err(|error| EventError::Unreadable {
        what: "event",
        reason: error.to_string(),
    });
    let content = event
        .as_ref()
        .map_err(|error| Refusal::from(error.clone()))
        .and_then(|event| Ok(parse_rule_event(event)?))
        .and_then(|message| services.routed(message));
    // Lambda retries an asynchronous invocation under the same request id: one that timed out
    // after its upload went through is answered from the memory of settled records.
    let request_id = services.context.request_id;
    let identity = format!("direct {request_id}");
    let key = (!request_id.is_empty()).then(|| services.record_key(&[&identity]));
    let device_serial = services.device_of(&content, event.as_ref().ok());
    let direct = Direct {
        event: event.ok(),
        identity,
        key,
        device_serial,
        bytes: content.as_ref().map_or(0, |routed| routed.payload.len()),
    };
    let item = Item {
        content,
        key,
        arrived: None,
    };
    (direct, item)
}

async fn answer(
    services: &Services<'_>,
    direct: Direct,
    outcome: Outcome,
    metrics: &mut InvocationMetrics,
) -> Result<Response, ForwardError> {
    match outcome {
        Outcome::Delivered(delivery) => Ok(Response::Delivered(Delivered {
            device_serial: direct.device_serial.unwrap_or_default(),
            bytes: direct.bytes,
            status: delivery.status.as_u16(),
            attempts: delivery.attempts,
        })),
        Outcome::Earlier(Settlement::Delivered) => {
            Ok(Response::DeliveredEarlier(DeliveredEarlier {
                device_serial: direct.device_serial.unwrap_or_default(),
            }))
        }
        Outcome::Earlier(Settlement::SetAside) => Ok(Response::SetAside(SetAside {
            error_type: "Permanent.SetAsideEarlier".to_owned(),
            error_message: "set aside by an earlier invocation".to_owned(),
        })),
        Outcome::SetAside(undeliverable) => {
            set_aside_now(services, direct, undeliverable, metrics).await
        }
        Outcome::Kept(kept) => Err(ForwardError::kept(kept)),
    }
}

/// Writes the event to the quarantine queue: answered as set aside once stored.
async fn set_aside_now(
    services: &Services<'_>,
    direct: Direct,
    undeliverable: Undeliverable,
    metrics: &mut InvocationMetrics,
) -> Result<Response, ForwardError> {
    if let Undeliverable::Refused(refusal) = &undeliverable {
        note_refusal(metrics, None, direct.device_serial.as_deref(), refusal);
    }
    let record = FailureRecord {
        identity: direct.identity,
        device_serial: direct.device_serial,
        request_payload: direct
            .event
            .as_ref()
            .map(unwrap_failure_record)
            .filter(|payload| payload.is_object())
            .cloned(),
        origin: Origin::new(SourceKind::Direct, &serde_json::json!({})),
        cause: cause(&undeliverable),
    };
    let record = ToSetAside {
        tag: (),
        record,
        key: direct.key,
    };
    let stored = services.set_aside(vec![record], metrics).await;
    if stored.first().map(|(_, stored)| *stored) == Some(Stored::Yes) {
        let cause = cause(&undeliverable);
        Ok(Response::SetAside(SetAside {
            error_type: cause.error_type,
            error_message: cause.error_message,
        }))
    } else {
        Err(ForwardError::undeliverable(undeliverable))
    }
}
