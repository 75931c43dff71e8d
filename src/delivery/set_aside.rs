//! Setting aside through the core: what can never be delivered is written to the quarantine, and
//! what was stored is counted and remembered as settled, in one place for every source.

use tokio::time::Instant;

use super::Deliverer;
use crate::observability::InvocationMetrics;
use crate::quarantine::{FailureRecord, Quarantine, RequestContext, Stored};
use crate::settled::{RecordKey, Settlement};

/// One record to set aside: its failure record, what names it in the memory of settled records,
/// and the tag its adapter knows it by.
pub(crate) struct ToSetAside<T> {
    pub tag: T,
    pub record: FailureRecord,
    pub key: Option<RecordKey>,
}

impl<U> Deliverer<U> {
    /// The core with somewhere to set records aside; without one, nothing is stored and every
    /// undeliverable record stays with its source.
    pub(crate) fn with_quarantine(mut self, quarantine: Option<Quarantine>) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// Whether `arn` (an SQS record's `eventSourceARN`) names the quarantine queue: its messages
    /// are replays, never written back to it.
    pub(crate) fn is_quarantine_queue(&self, arn: &str) -> bool {
        self.quarantine
            .as_ref()
            .is_some_and(|quarantine| quarantine.is_queue_arn(arn))
    }

    /// Writes `records` to the quarantine and says of each, by its tag, whether it was stored; a
    /// stored record is counted and remembered as settled.
    pub(crate) async fn set_aside<T>(
        &self,
        records: Vec<ToSetAside<T>>,
        context: RequestContext<'_>,
        deadline: Instant,
        metrics: &mut InvocationMetrics,
    ) -> Vec<(T, Stored)> {
        let Some(quarantine) = &self.quarantine else {
            return records
                .into_iter()
                .map(|record| (record.tag, Stored::No))
                .collect();
        };
        let records = records
            .into_iter()
            .map(|record| ((record.tag, record.key), record.record))
            .collect();
        let writing = Instant::now();
        let stored = quarantine.set_aside(records, context, deadline).await;
        self.clocks.note_unasked(writing.elapsed());
        let mut answers = Vec::with_capacity(stored.len());
        for ((tag, key), stored) in stored {
            if stored == Stored::Yes {
                metrics.chunks_quarantined += 1;
                if let Some(key) = key {
                    self.memory.remember(key, Settlement::SetAside);
                }
            }
            answers.push((tag, stored));
        }
        answers
    }
}
