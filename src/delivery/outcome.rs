//! What became of one item, in the classes that decide what happens next (docs/delivery.md).

use thiserror::Error;

use crate::event::EventError;
use crate::memfault::{Delivery, UploadError};
use crate::routing::RouteError;
use crate::settled::Settlement;

/// Why an item was never sent: it is wrong in itself, and will be whenever it is retried.
#[derive(Debug, Clone, Error)]
pub(crate) enum Refusal {
    #[error("refused: {0}")]
    Event(#[from] EventError),
    #[error("refused: {0}")]
    Route(#[from] RouteError),
}

impl Refusal {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Event(error) => error.kind(),
            Self::Route(error) => error.kind(),
        }
    }

    /// Lambda's `errorType` for it: it fails whenever it is retried.
    pub(crate) fn error_type(&self) -> String {
        format!("Permanent.{}", self.kind())
    }
}

/// What became of one item.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Memfault accepted it, from the request this invocation sent.
    Delivered(Delivery),
    /// Retrying cannot help: it belongs in the quarantine, with its data.
    SetAside(Undeliverable),
    /// Retrying may help: the source keeps it for a later invocation.
    Kept(Kept),
    /// The source sent it again after this execution environment settled it (delivered it, or
    /// stored it in the quarantine): answered from memory, nothing sent or written again.
    Earlier(Settlement),
}

impl Outcome {
    /// Settled before any quarantine write of this invocation: delivered now or earlier, or
    /// set aside earlier.
    pub(crate) fn is_settled(&self) -> bool {
        matches!(self, Self::Delivered(_) | Self::Earlier(_))
    }
}

#[derive(Debug)]
pub(crate) enum Undeliverable {
    /// Never sent: the event, its topic or its serial is wrong.
    Refused(Refusal),
    /// Memfault refused this chunk when it was sent alone.
    Rejected(UploadError),
    /// The device's uploads kept failing while other devices' went through, for longer than
    /// the stall limit: set aside so that its shard moves on.
    Stalled(UploadError),
}

#[derive(Debug, Error)]
pub(crate) enum Kept {
    /// The request that carried it failed for a reason that may pass (or a setting to fix).
    #[error(transparent)]
    Failed(UploadError),
    /// Never sent: an earlier chunk of the same device was not delivered, and sending this one
    /// would let it overtake that chunk.
    #[error("held back: an earlier chunk of the same device was not delivered")]
    BehindFailure,
    /// Never sent: see the reason.
    #[error("not started: {0}")]
    NotStarted(NotStarted),
}

impl Kept {
    /// Lambda's `errorType` for it: always `Retryable.*`.
    pub(crate) fn error_type(&self) -> String {
        match self {
            Self::Failed(error) => error.error_type(),
            Self::BehindFailure => "Retryable.BehindFailure".to_owned(),
            Self::NotStarted(NotStarted::Deadline) => "Retryable.UpstreamDeadline".to_owned(),
            Self::NotStarted(NotStarted::Outage) => "Retryable.UpstreamOutage".to_owned(),
            Self::NotStarted(NotStarted::ProjectRefused) => {
                "Retryable.UpstreamConfiguration".to_owned()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub(crate) enum NotStarted {
    /// The deadline (less MEMFAULT_DEADLINE_MARGIN_MS) left no time for it.
    #[error("the invocation deadline is within MEMFAULT_DEADLINE_MARGIN_MS")]
    Deadline,
    /// Uploads of this invocation were failing for every device: Memfault is down.
    #[error("every device's uploads failed: Memfault looks unavailable")]
    Outage,
    /// Memfault refused the device's project key earlier in this invocation.
    #[error("Memfault refused the project key of these devices earlier in this invocation")]
    ProjectRefused,
}

impl Undeliverable {
    /// Lambda's `errorType` words for it: `Permanent.*` fails whenever it is retried,
    /// `Retryable.*` may pass later (a replay once the device or Memfault recovered).
    pub(crate) fn error_type(&self) -> String {
        match self {
            Self::Refused(refusal) => refusal.error_type(),
            Self::Rejected(_) => "Permanent.UpstreamRejected".to_owned(),
            Self::Stalled(error) => error.error_type(),
        }
    }

    /// What the quarantine's record says happened.
    pub(crate) fn condition(&self) -> &'static str {
        match self {
            Self::Stalled(_) => "Stalled",
            _ => "Undeliverable",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Self::Refused(refusal) => refusal.to_string(),
            Self::Rejected(error) => error.to_string(),
            Self::Stalled(error) => format!(
                "the device's uploads kept failing past MEMFAULT_STALL_LIMIT_SECONDS while other devices' were delivered: {error}"
            ),
        }
    }
}
