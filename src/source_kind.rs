//! The event sources the function reads, and every name each one goes by: a new source is a new
//! variant here, and the compiler then lists every place that must say how it is handled.
//!
//! A leaf: the envelope recogniser, the delivery core, failure records, log lines and metrics
//! all take their names from here.

/// Where an invocation's items come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SourceKind {
    /// One IoT rule event per invocation (or Lambda's on-failure record of one).
    Direct,
    /// An SQS batch: queued mode, or a replay of the quarantine queue.
    Sqs,
    /// A Kinesis batch: stream mode, or a replay of the event source mapping's failure record.
    Kinesis,
}

impl SourceKind {
    /// The batches, as the envelope recogniser looks for them.
    pub(crate) const BATCHES: [Self; 2] = [Self::Sqs, Self::Kinesis];

    /// What a batch's records say in `eventSource`; a direct invocation has no such field.
    pub(crate) fn event_source(self) -> Option<&'static str> {
        match self {
            Self::Direct => None,
            Self::Sqs => Some("aws:sqs"),
            Self::Kinesis => Some("aws:kinesis"),
        }
    }

    /// Its name in log lines (a batch's `source` field) and in a refused batch's message.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Sqs => "SQS",
            Self::Kinesis => "Kinesis",
        }
    }

    /// The metrics' `Mode` dimension: the deployment mode the source serves.
    pub(crate) fn mode(self) -> &'static str {
        match self {
            Self::Direct => "Direct",
            Self::Sqs => "Queued",
            Self::Kinesis => "Stream",
        }
    }

    /// The key a failure record keeps its origin under, as Lambda's destination records do.
    pub(crate) fn origin_key(self) -> &'static str {
        match self {
            Self::Direct => "DirectInvocation",
            Self::Sqs => "SQSMessage",
            Self::Kinesis => "KinesisRecord",
        }
    }

    /// Whether the source holds every later record behind one it must resend (a shard's
    /// checkpoint): a failing device then holds the others, up to the stall limit, and only
    /// records before the first kept one are set aside.
    pub(crate) fn holds_order(self) -> bool {
        matches!(self, Self::Kinesis)
    }

    /// Whether an invocation carries one item: its delivered upload, logged at INFO, is the
    /// invocation's outcome. A batch has a summary line of its own, and at fleet scale a line per
    /// delivered upload would cost about as much CloudWatch Logs ingestion as the rest of the
    /// pipeline together (docs/cost-model.md): a batch's delivered uploads are logged at DEBUG.
    pub(crate) fn one_item(self) -> bool {
        matches!(self, Self::Direct)
    }
}
