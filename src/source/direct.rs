//! Direct invocations: one IoT rule event (or Lambda's on-failure record of one) per
//! invocation. The answer is the delivery, or an error whose `errorType` tells Lambda's retries
//! and the failure queue whether trying again can help.

use serde_json::Value;
use tokio::time::Instant;

use crate::delivery::Outcome;
use crate::event::{EventError, parse_rule_event};
use crate::handler::{Delivered, ForwardError, Forwarder, note_refusal};
use crate::observability::{InvocationMetrics, emit_metrics};

pub async fn forward(
    forwarder: &Forwarder,
    payload: &str,
    deadline: Instant,
) -> Result<Delivered, ForwardError> {
    let mut metrics = InvocationMetrics::default();
    let item = serde_json::from_str::<Value>(payload)
        .map_err(|error| EventError::Unreadable {
            what: "event",
            reason: error.to_string(),
        })
        .and_then(|event| parse_rule_event(&event));
    let item = forwarder.routed(item);
    let bytes = item.as_ref().map_or(0, |routed| routed.payload.len());
    let serial = item
        .as_ref()
        .ok()
        .map(|routed| routed.route.device_serial.to_string());
    let outcome = forwarder
        .deliver(vec![item], false, deadline, &mut metrics)
        .await
        .pop()
        .expect("one outcome per item");
    let result = match outcome {
        Outcome::Delivered(delivery) => Ok(Delivered {
            device_serial: serial.unwrap_or_default(),
            bytes,
            status: delivery.status.as_u16(),
            attempts: delivery.attempts,
        }),
        Outcome::Refused(error) => {
            note_refusal(&mut metrics, None, &error);
            Err(error)
        }
        Outcome::Failed(error) => Err(error.into()),
        Outcome::HeldBack => unreachable!("a lone chunk has nothing before it to wait for"),
    };
    if result.is_err() {
        metrics.chunks_undelivered += 1;
    }
    emit_metrics(
        forwarder.config().metrics_namespace.as_deref(),
        "Direct",
        &metrics,
    );
    result
}
