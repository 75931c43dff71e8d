//! What this execution environment already settled: records Memfault accepted, or that were set
//! aside, so that a record the source sends again is answered without a second upload.
//!
//! Lambda resends every record after a stream's checkpoint, and an SQS message whose batch
//! failed partly comes back while its neighbours do not; a resend that reaches the environment
//! that settled the record costs nothing. One that reaches another environment is uploaded again
//! (Memfault tolerates duplicates; docs/delivery.md). The memory is bounded: it forgets the
//! least recently used entries first, so that the records of a held shard, recalled at every
//! resend, stay while newer records from other shards come and go.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use lru::LruCache;

/// A record's identity within its source (stream and shard and sequence number, queue and
/// message id), as 128 bits: two independently keyed SipHash digests, so that telling two
/// records apart does not rest on 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RecordKey([u64; 2]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settlement {
    Delivered,
    SetAside,
}

pub struct SettledMemory {
    hashers: [RandomState; 2],
    inner: Mutex<LruCache<RecordKey, Settlement>>,
    capacity: usize,
}

impl Default for SettledMemory {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl SettledMemory {
    /// Five full batches of the largest size a mapping sends (10,000 records); the size when
    /// full is measured by `make bench` (docs/benchmark.md).
    pub const CAPACITY: usize = 50_000;

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        // Unbounded, and bounded here: a bounded LruCache allocates its whole table up front,
        // which a direct-mode environment that settles a handful of records never needs.
        Self {
            hashers: [RandomState::new(), RandomState::new()],
            inner: Mutex::new(LruCache::unbounded()),
            capacity: capacity.max(1),
        }
    }

    /// The key of a record named by `parts`, e.g. its stream ARN and event id.
    pub(crate) fn key(&self, parts: &[&str]) -> RecordKey {
        let digest = |hasher: &RandomState| hasher.hash_one(parts);
        RecordKey([digest(&self.hashers[0]), digest(&self.hashers[1])])
    }

    /// What became of a record, if remembered; a recalled record is used again, so it is
    /// forgotten last.
    pub(crate) fn recall(&self, key: RecordKey) -> Option<Settlement> {
        self.entries().get(&key).copied()
    }

    pub(crate) fn remember(&self, key: RecordKey, settlement: Settlement) {
        let mut entries = self.entries();
        entries.put(key, settlement);
        if entries.len() > self.capacity {
            entries.pop_lru();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<RecordKey, Settlement>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters: at worst one record is uploaded again.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_was_settled_and_forgets_the_least_recently_used_first() {
        let memory = SettledMemory::with_capacity(2);
        let [a, b, c, d] = ["1", "2", "3", "4"].map(|id| memory.key(&["stream", id]));
        memory.remember(a, Settlement::Delivered);
        memory.remember(b, Settlement::SetAside);
        assert_eq!(memory.recall(b), Some(Settlement::SetAside));
        assert_eq!(memory.recall(a), Some(Settlement::Delivered));
        // A was recalled last: B goes first.
        memory.remember(c, Settlement::Delivered);
        assert_eq!(memory.recall(b), None);
        assert_eq!(memory.recall(a), Some(Settlement::Delivered));
        memory.remember(d, Settlement::Delivered);
        assert_eq!(memory.recall(c), None);
        assert_eq!(memory.recall(a), Some(Settlement::Delivered));
        assert_eq!(memory.len(), 2);
    }

    #[test]
    fn keys_tell_sources_and_records_apart() {
        let memory = SettledMemory::default();
        assert_ne!(memory.key(&["a", "1"]), memory.key(&["a", "2"]));
        assert_ne!(memory.key(&["a1", ""]), memory.key(&["a", "1"]));
        assert_eq!(memory.key(&["a", "1"]), memory.key(&["a", "1"]));
    }
}
