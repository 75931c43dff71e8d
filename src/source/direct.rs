//! Direct invocations: one IoT rule event (or Lambda's on-failure record of one) per
//! invocation. The answer is the delivery; a chunk that can never be delivered is written to the
//! failure queue and answered as set aside, so that Lambda spends its retries only on what can
//! succeed; anything else is an error whose `errorType` says whether trying again can help.

use serde_json::{Value, json};

use super::{Delivered, ForwardError, Response, Services, SetAside, cause, note_refusal};
use crate::delivery::{Accepted, DeliveryLog, Item, Kept, NotStarted, Outcome, Undeliverable};
use crate::event::{EventError, parse_rule_event, unwrap_failure_record};
use crate::memfault::UploadError;
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::quarantine::FailureRecord;

pub async fn forward(services: &Services<'_>, payload: &str) -> Result<Response, ForwardError> {
    let mut metrics = InvocationMetrics::default();
    let event = serde_json::from_str::<Value>(payload).map_err(|error| EventError::Unreadable {
        what: "event",
        reason: error.to_string(),
    });
    let content = services.routed(
        event
            .as_ref()
            .map_err(Clone::clone)
            .and_then(parse_rule_event),
    );
    let bytes = content.as_ref().map_or(0, |routed| routed.payload.len());
    let serial = content
        .as_ref()
        .ok()
        .map(|routed| routed.route.device_serial.to_string());
    let item = Item {
        content,
        key: None,
        arrived: None,
    };
    let outcome = services
        .deliver(vec![item], DeliveryLog::EachAtInfo, &mut metrics)
        .await
        .pop()
        .expect("one outcome per item");
    let result = match outcome {
        Outcome::Delivered(Accepted::Now(delivery)) => Ok(Response::Delivered(Delivered {
            device_serial: serial.clone().unwrap_or_default(),
            bytes,
            status: delivery.status.as_u16(),
            attempts: delivery.attempts,
        })),
        Outcome::Delivered(Accepted::Earlier) => {
            unreachable!("a direct event has no record key to remember")
        }
        Outcome::SetAside(undeliverable) => {
            if let Undeliverable::Refused(refusal) = &undeliverable {
                note_refusal(&mut metrics, None, refusal);
            }
            let record = FailureRecord {
                identity: format!("direct {}", services.invocation.request_id),
                device_serial: serial,
                request_payload: event
                    .ok()
                    .map(|event| unwrap_failure_record(&event).clone())
                    .filter(Value::is_object),
                origin: ("DirectInvocation", json!({})),
                cause: cause(&undeliverable),
            };
            let stored = services.set_aside(vec![(record, None)], &mut metrics).await;
            match (stored.first(), undeliverable) {
                (Some(true), undeliverable) => {
                    let cause = cause(&undeliverable);
                    Ok(Response::SetAside(SetAside {
                        set_aside: true,
                        error_type: cause.error_type,
                        error_message: cause.error_message,
                    }))
                }
                (_, Undeliverable::Refused(refusal)) => Err(refusal.into()),
                (_, Undeliverable::Rejected(error) | Undeliverable::Stalled(error)) => {
                    Err(error.into())
                }
                (_, Undeliverable::SetAsideEarlier) => {
                    unreachable!("a direct event has no record key to remember")
                }
            }
        }
        Outcome::Kept(Kept::Failed(error)) => Err(error.into()),
        Outcome::Kept(Kept::NotStarted(NotStarted::Deadline)) => {
            Err(UploadError::NoTimeLeft.into())
        }
        Outcome::Kept(Kept::BehindFailure | Kept::NotStarted(_)) => {
            unreachable!("a lone chunk has nothing before it to wait for")
        }
    };
    if result.is_err() {
        metrics.chunks_undelivered += 1;
    }
    emit_metrics(
        services.config.metrics_namespace.as_deref(),
        "Direct",
        &metrics,
    );
    result
}
