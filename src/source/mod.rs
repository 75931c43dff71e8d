//! Event sources: how an invocation's envelope is recognised, and one adapter per envelope that
//! turns it into delivery items and the delivery outcomes into the answer Lambda expects.
//!
//! | envelope | adapter | answer |
//! |---|---|---|
//! | IoT rule event, or Lambda's on-failure record of one | [`direct`] | delivered, set aside, or an error |
//! | SQS batch (queued mode, quarantine queue replay) | [`sqs`] | `batchItemFailures` by message id |
//! | Kinesis batch, or the ESM's S3 failure record of one | [`kinesis`] | `batchItemFailures` by sequence number |

mod answer;
pub(crate) mod direct;
mod envelope;
pub(crate) mod kinesis;
mod services;
pub(crate) mod sqs;

use answer::BatchRefused;
pub use answer::{Delivered, DeliveredEarlier, ForwardError, Response, SetAside};
pub(crate) use envelope::{Envelope, envelope};
pub(crate) use services::Services;

/// The answer to an envelope that claims to be a batch and is not a readable one.
pub(crate) fn malformed(what: &'static str) -> ForwardError {
    ForwardError::batch(BatchRefused::malformed(what))
}
