//! What an invocation answers Lambda: a delivery, a set-aside chunk, a batch's item failures, or
//! an error whose `errorType` says whether trying again can help.

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::Diagnostic;
use serde::Serialize;
use thiserror::Error;

use crate::delivery::{Kept, Undeliverable};
use crate::source_kind::SourceKind;

/// Why an invocation failed, as Lambda reports it: an `errorType` and a message, nothing to
/// match on.
#[derive(Debug, Error)]
#[error(transparent)]
pub struct ForwardError(Failure);

#[derive(Debug, Error)]
enum Failure {
    /// Can never be delivered, and could not be set aside.
    #[error("{}", .0.message())]
    Undeliverable(Undeliverable),
    /// Not delivered, for a reason that may pass: the source keeps it.
    #[error(transparent)]
    Kept(Kept),
    #[error(transparent)]
    Batch(BatchRefused),
}

impl ForwardError {
    pub(crate) fn undeliverable(undeliverable: Undeliverable) -> Self {
        Self(Failure::Undeliverable(undeliverable))
    }

    pub(crate) fn kept(kept: Kept) -> Self {
        Self(Failure::Kept(kept))
    }

    pub(crate) fn batch(refused: BatchRefused) -> Self {
        Self(Failure::Batch(refused))
    }

    /// Lambda's `errorType`: `Permanent.*` will fail again however often it is retried,
    /// `Retryable.*` may succeed later (Memfault down, rate limited, too slow, or a key to fix).
    pub fn error_type(&self) -> String {
        match &self.0 {
            Failure::Undeliverable(undeliverable) => undeliverable.error_type(),
            Failure::Kept(kept) => kept.error_type(),
            Failure::Batch(_) => BatchRefused::ERROR_TYPE.to_owned(),
        }
    }

    /// Lambda's `errorMessage`: what happened, in words a person on call can act on.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl From<ForwardError> for Diagnostic {
    fn from(error: ForwardError) -> Self {
        Diagnostic {
            error_type: error.error_type(),
            error_message: error.message(),
        }
    }
}

/// A batch that cannot be answered item by item: it fails whole, before anything is sent.
#[derive(Debug, Error)]
#[error("refused: {what}: the whole batch is refused")]
pub(crate) struct BatchRefused {
    what: String,
}

impl BatchRefused {
    const ERROR_TYPE: &'static str = "Permanent.MalformedBatch";

    /// A record without a field its failure would be reported or named by.
    pub(super) fn new(source: SourceKind, field: &'static str) -> Self {
        let source_name = source.name();
        Self::logged(format!(
            "a record of the {source_name} batch has no usable {field}, so its failure could be neither reported nor named"
        ))
    }

    /// An envelope that claims to be a batch and is not a readable one.
    pub(super) fn malformed(what: &'static str) -> Self {
        Self::logged(what.to_owned())
    }

    fn logged(what: String) -> Self {
        let refused = Self { what };
        tracing::warn!(
            outcome = "refused",
            error_type = Self::ERROR_TYPE,
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
#[serde(into = "SetAsideJson")]
pub struct SetAside {
    pub error_type: String,
    pub error_message: String,
}

/// What a direct invocation answers for an event this execution environment already delivered
/// (Lambda retrying an invocation whose answer it did not get).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(into = "DeliveredEarlierJson")]
pub struct DeliveredEarlier {
    pub device_serial: String,
}

/// The JSON of a set-aside answer: the flag that names it is always `true`.
#[derive(Serialize)]
struct SetAsideJson {
    set_aside: bool,
    error_type: String,
    error_message: String,
}

impl From<SetAside> for SetAsideJson {
    fn from(answer: SetAside) -> Self {
        Self {
            set_aside: true,
            error_type: answer.error_type,
            error_message: answer.error_message,
        }
    }
}

/// The JSON of an answer from memory: the flag that names it is always `true`.
#[derive(Serialize)]
struct DeliveredEarlierJson {
    device_serial: String,
    delivered_earlier: bool,
}

impl From<DeliveredEarlier> for DeliveredEarlierJson {
    fn from(answer: DeliveredEarlier) -> Self {
        Self {
            device_serial: answer.device_serial,
            delivered_earlier: true,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_carry_the_flag_that_names_them() {
        let set_aside = Response::SetAside(SetAside {
            error_type: "Permanent.InvalidBase64".into(),
            error_message: "refused".into(),
        });
        assert_eq!(
            serde_json::to_value(set_aside).unwrap(),
            json!({"set_aside": true, "error_type": "Permanent.InvalidBase64", "error_message": "refused"})
        );
        let earlier = Response::DeliveredEarlier(DeliveredEarlier {
            device_serial: "D1".into(),
        });
        assert_eq!(
            serde_json::to_value(earlier).unwrap(),
            json!({"device_serial": "D1", "delivered_earlier": true})
        );
        let delivered = Response::Delivered(Delivered {
            device_serial: "D1".into(),
            bytes: 3,
            status: 202,
            attempts: 1,
        });
        assert_eq!(
            serde_json::to_value(delivered).unwrap(),
            json!({"device_serial": "D1", "bytes": 3, "status": 202, "attempts": 1})
        );
    }

    #[test]
    fn a_malformed_batch_has_its_own_error_type() {
        let error = ForwardError::batch(BatchRefused::malformed("not a batch"));
        assert_eq!(error.error_type(), "Permanent.MalformedBatch");
        assert_eq!(
            error.message(),
            "refused: not a batch: the whole batch is refused"
        );
        let diagnostic = Diagnostic::from(error);
        assert_eq!(diagnostic.error_type, "Permanent.MalformedBatch");
    }
}
