//! What an invocation answers Lambda: a delivery, a set-aside chunk, a batch's item failures, or
//! an error whose `errorType` says whether trying again can help.

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::Diagnostic;
use serde::Serialize;
use thiserror::Error;

use crate::delivery::{Kept, Undeliverable};

/// Why an invocation failed, as Lambda reports it.
#[derive(Debug, Error)]
pub enum ForwardError {
    /// Can never be delivered, and could not be set aside.
    #[error("{}", .0.message())]
    Undeliverable(Undeliverable),
    /// Not delivered, for a reason that may pass: the source keeps it.
    #[error(transparent)]
    Kept(#[from] Kept),
    #[error(transparent)]
    Batch(#[from] BatchRefused),
}

impl ForwardError {
    /// Lambda's `errorType`: `Permanent.*` will fail again however often it is retried,
    /// `Retryable.*` may succeed later (Memfault down, rate limited, too slow, or a key to fix).
    pub fn error_type(&self) -> String {
        match self {
            Self::Undeliverable(undeliverable) => undeliverable.error_type(),
            Self::Kept(kept) => kept.error_type(),
            Self::Batch(_) => "Permanent.InvalidEvent".to_owned(),
        }
    }
}

impl From<ForwardError> for Diagnostic {
    fn from(error: ForwardError) -> Self {
        Diagnostic {
            error_type: error.error_type(),
            error_message: error.to_string(),
        }
    }
}

/// A batch that cannot be answered item by item: it fails whole, before anything is sent.
#[derive(Debug, Error)]
#[error(
    "refused: a record of the {source_name} batch has no usable {field}, so its failure could not be reported: the whole batch is refused"
)]
pub struct BatchRefused {
    source_name: &'static str,
    field: &'static str,
}

impl BatchRefused {
    pub(super) fn new(source_name: &'static str, field: &'static str) -> Self {
        let refused = Self { source_name, field };
        tracing::warn!(
            outcome = "refused",
            source = source_name,
            error_type = "Permanent.InvalidEvent",
            error = %refused,
            "batch refused whole"
        );
        refused
    }
}

/// What a direct invocation answers when Memfault accepted the chunk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivered {
    pub device_serial: String,
    pub bytes: usize,
    pub status: u16,
    pub attempts: u32,
}

/// What a direct invocation answers when the chunk can never be delivered and was written to the
/// quarantine queue instead: not a delivery, and not an error Lambda would retry in vain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SetAside {
    pub set_aside: bool,
    pub error_type: String,
    pub error_message: String,
}

/// What a direct invocation answers for an event this execution environment already delivered
/// (Lambda retrying an invocation whose answer it did not get).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeliveredEarlier {
    pub device_serial: String,
    pub delivered_earlier: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Response {
    Delivered(Delivered),
    DeliveredEarlier(DeliveredEarlier),
    SetAside(SetAside),
    Sqs(SqsBatchResponse),
    Kinesis(KinesisEventResponse),
}
