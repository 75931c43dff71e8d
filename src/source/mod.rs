//! Event sources: how an invocation's envelope is recognised, and one adapter per envelope that
//! turns it into delivery items and the delivery outcomes into the answer Lambda expects.
//!
//! | envelope | adapter | answer |
//! |---|---|---|
//! | IoT rule event, or Lambda's on-failure record of one | [`direct`] | delivered, set aside, or an error |
//! | SQS batch (queued mode, quarantine queue replay) | [`sqs`] | `batchItemFailures` by message id |
//! | Kinesis batch, or the ESM's S3 failure record of one | [`kinesis`] | `batchItemFailures` by sequence number |

mod answer;
mod direct;
mod envelope;
mod kinesis;
mod services;
mod sqs;

use answer::BatchRefused;
pub use answer::{Delivered, DeliveredEarlier, ForwardError, Response, SetAside};
use envelope::{Envelope, envelope};
pub(crate) use services::Services;

/// Hands an invocation's payload to the adapter of its envelope.
pub(crate) async fn forward(
    services: &Services<'_>,
    payload: &str,
) -> Result<Response, ForwardError> {
    match envelope(payload) {
        Envelope::Direct => direct::forward(services, payload).await,
        Envelope::Sqs(records) => sqs::forward(services, records).await,
        Envelope::Kinesis(records) => kinesis::forward(services, records).await,
        Envelope::KinesisFailureRecord(batch) => {
            kinesis::forward_failure_record(services, &batch).await
        }
        Envelope::Malformed(what) => Err(ForwardError::batch(BatchRefused::malformed(what))),
    }
}
