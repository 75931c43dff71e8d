//! Direct invocations: one IoT rule event (or Lambda's on-failure record of one) per
//! invocation. The answer is the delivery; a chunk that can never be delivered is written to the
//! quarantine queue and answered as set aside, so that Lambda spends its retries only on what can
//! succeed; anything else is an error whose `errorType` says whether trying again can help.

use serde_json::Value;

use super::services::{cause, note_refusal};
use super::{Delivered, DeliveredEarlier, ForwardError, Response, Services, SetAside};
use crate::delivery::{Accepted, DeliveryLog, Item, Outcome, Refusal, Undeliverable};
use crate::event::{EventError, parse_rule_event, unwrap_failure_record};
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::quarantine::{FailureRecord, Origin};

pub(crate) async fn forward(
    services: &Services<'_>,
    payload: &str,
) -> Result<Response, ForwardError> {
    let mut metrics = InvocationMetrics::default();
    let event = serde_json::from_str::<Value>(payload).map_err(|error| EventError::Unreadable {
        what: "event",
        reason: error.to_string(),
    });
    let content = event
        .as_ref()
        .map_err(|error| Refusal::from(error.clone()))
        .and_then(|event| Ok(parse_rule_event(event)?))
        .and_then(|message| services.routed(message));
    let bytes = content.as_ref().map_or(0, |routed| routed.payload.len());
    let device_serial = content
        .as_ref()
        .ok()
        .map(|routed| routed.route.device_serial.to_string());
    // Lambda retries an asynchronous invocation under the same request id: one that timed out
    // after its upload went through is answered from the memory of settled records.
    let request_id = services.invocation.request_id;
    let identity = format!("direct {request_id}");
    let item = Item {
        content,
        key: (!request_id.is_empty()).then(|| services.memory.key(&[&identity])),
        arrived: None,
    };
    let key = item.key;
    let outcome = services
        .deliver(vec![item], DeliveryLog::EachAtInfo, &mut metrics)
        .await
        .pop()
        .expect("one outcome per item");
    let result = match outcome {
        Outcome::Delivered(Accepted::Now(delivery)) => Ok(Response::Delivered(Delivered {
            device_serial: device_serial.unwrap_or_default(),
            bytes,
            status: delivery.status.as_u16(),
            attempts: delivery.attempts,
        })),
        Outcome::Delivered(Accepted::Earlier) => Ok(Response::DeliveredEarlier(DeliveredEarlier {
            device_serial: device_serial.unwrap_or_default(),
            delivered_earlier: true,
        })),
        Outcome::SetAside(undeliverable) => {
            if let Undeliverable::Refused(refusal) = &undeliverable {
                note_refusal(&mut metrics, None, refusal);
            }
            let stored = match undeliverable {
                Undeliverable::SetAsideEarlier => true,
                _ => {
                    let record = FailureRecord {
                        identity,
                        device_serial,
                        request_payload: event
                            .ok()
                            .map(|event| unwrap_failure_record(&event).clone())
                            .filter(Value::is_object),
                        origin: Origin::Direct,
                        cause: cause(&undeliverable),
                    };
                    let stored = services.set_aside(vec![(record, key)], &mut metrics).await;
                    stored.first().copied().unwrap_or(false)
                }
            };
            if stored {
                let cause = cause(&undeliverable);
                Ok(Response::SetAside(SetAside {
                    set_aside: true,
                    error_type: cause.error_type,
                    error_message: cause.error_message,
                }))
            } else {
                Err(ForwardError::Undeliverable(undeliverable))
            }
        }
        Outcome::Kept(kept) => Err(kept.into()),
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
