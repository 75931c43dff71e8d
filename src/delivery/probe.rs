//! Which chunk a probe re-posts: one Memfault accepted earlier, never the same one twice.
//!
//! Memfault drops a duplicate of a chunk it has (its MQTT guide advises QoS 1, which resends),
//! but a copy re-posted again and again, long after the device's later chunks, is not what a
//! device ever sends. So each chunk is probed at most once by an environment, the newest first:
//! those of the invocation's own batch that this environment delivered before, then the last
//! few chunks it delivered from any stream batch, so that a batch holding only a failing device's
//! records can still be decided.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use super::Routed;
use crate::routing::Route;

pub(crate) struct ProbeChunks {
    hasher: RandomState,
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The last chunks delivered, oldest first.
    recent: VecDeque<Routed>,
    /// Digests of the chunks probed, oldest first, and the same as a set.
    probed_in_order: VecDeque<u64>,
    probed: HashSet<u64>,
}

impl Default for ProbeChunks {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            inner: Mutex::new(State::default()),
        }
    }
}

impl ProbeChunks {
    /// Delivered chunks kept to probe with: more than the probes one stall needs.
    const RECENT: usize = 16;
    /// A larger chunk is not kept: the recent chunks stay within 16 × 8 KiB.
    const MAX_RECENT_BYTES: usize = 8 * 1024;
    /// Probed chunks remembered: at ten probes per stall limit, days of a held shard.
    const PROBED: usize = 4_096;

    /// Keeps a chunk Memfault just accepted as one to probe with later.
    pub(crate) fn delivered(&self, route: &Route, payload: &bytes::Bytes) {
        if payload.len() > Self::MAX_RECENT_BYTES {
            return;
        }
        let mut state = self.state();
        if state.recent.len() == Self::RECENT {
            state.recent.pop_front();
        }
        state.recent.push_back(Routed {
            route: route.clone(),
            payload: payload.clone(),
        });
    }

    /// The newest chunk of `in_batch` (chunks delivered earlier, in batch order), or else of
    /// the recent ones, that `eligible` allows and that was never probed; it counts as probed.
    pub(crate) fn choose(
        &self,
        in_batch: &[Routed],
        eligible: impl Fn(&Route) -> bool,
    ) -> Option<Routed> {
        let mut state = self.state();
        let digest = |routed: &Routed| {
            self.hasher
                .hash_one((routed.route.device_serial.as_str(), routed.payload.as_ref()))
        };
        let chosen = in_batch
            .iter()
            .rev()
            .chain(state.recent.iter().rev())
            .find(|routed| eligible(&routed.route) && !state.probed.contains(&digest(routed)))
            .cloned()?;
        let chosen_digest = digest(&chosen);
        if state.probed_in_order.len() == Self::PROBED {
            if let Some(forgotten) = state.probed_in_order.pop_front() {
                state.probed.remove(&forgotten);
            }
        }
        state.probed_in_order.push_back(chosen_digest);
        state.probed.insert(chosen_digest);
        Some(chosen)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // At worst a chunk is probed a second time.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(serial: &str, data: &str) -> Routed {
        Routed {
            route: Route {
                device_serial: serial.parse().unwrap(),
                project_key: "Key".parse().unwrap(),
            },
            payload: bytes::Bytes::from(data.to_owned()),
        }
    }

    fn payload(chosen: Option<Routed>) -> Option<String> {
        chosen.map(|routed| String::from_utf8_lossy(&routed.payload).into_owned())
    }

    #[test]
    fn the_newest_eligible_chunk_first_and_each_chunk_once() {
        let chunks = ProbeChunks::default();
        let batch = [routed("A", "a1"), routed("B", "b1"), routed("A", "a2")];
        let any = |_: &Route| true;
        assert_eq!(payload(chunks.choose(&batch, any)).as_deref(), Some("a2"));
        let not_a = |route: &Route| route.device_serial.as_str() != "A";
        assert_eq!(payload(chunks.choose(&batch, not_a)).as_deref(), Some("b1"));
        assert_eq!(payload(chunks.choose(&batch, any)).as_deref(), Some("a1"));
        assert_eq!(chunks.choose(&batch, any).map(|_| ()), None, "all probed");
    }

    #[test]
    fn recent_deliveries_serve_a_batch_with_nothing_delivered_earlier() {
        let chunks = ProbeChunks::default();
        for index in 0..20 {
            let chunk = routed("C", &format!("c{index}"));
            chunks.delivered(&chunk.route, &chunk.payload);
        }
        let large = routed("C", &"x".repeat(ProbeChunks::MAX_RECENT_BYTES + 1));
        chunks.delivered(&large.route, &large.payload);
        let chosen: Vec<String> =
            std::iter::from_fn(|| payload(chunks.choose(&[], |_| true))).collect();
        let newest_first: Vec<String> = (4..20).rev().map(|index| format!("c{index}")).collect();
        assert_eq!(chosen, newest_first, "the last 16 small ones, each once");
    }
}
