//! Stall clocks: how long a device, or a project whose key Memfault refuses, has kept failing
//! while Memfault was demonstrably up. They live in the execution environment, not in one
//! invocation, because a held shard sends the same records again and again: most of a retried
//! batch is answered from the memory of settled records, so what one invocation holds says
//! nothing about how long a device has been failing (docs/delivery.md, "Stalled devices").
//!
//! A clock starts when its device (or project) fails in an invocation that has fresh evidence of
//! Memfault being up: an upload it accepted in that invocation, or the invocation's probe. It
//! clears when the device delivers (or the key is accepted). Every clock resets when an
//! invocation finds Memfault down, and when no invocation has had evidence of Memfault being up
//! for longer than the stall limit: a clock counts healthy time, never time nobody could vouch
//! for. After a stall the clock is kept, so that the device's later records, failing the same
//! way, are set aside at once instead of holding the shard for another stall limit each.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::routing::{ProjectKey, Route};

/// What one invocation learnt about Memfault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Evidence<'a> {
    /// Memfault accepted uploads with these project keys in this invocation.
    Up(Vec<&'a ProjectKey>),
    /// Uploads failed and nothing showed Memfault up: an outage.
    Down,
    /// Nothing to go by: clocks neither advance to a decision nor reset.
    Unknown,
}

impl Evidence<'_> {
    /// Whether Memfault accepted an upload with a key other than `refused`.
    fn up_for_others_than(&self, refused: &ProjectKey) -> bool {
        matches!(self, Self::Up(keys) if keys.iter().any(|key| *key != refused))
    }
}

/// What one invocation saw of its devices and keys, for the clocks.
#[derive(Debug, Default)]
pub(crate) struct Observed<'a> {
    /// Devices with at least one upload accepted.
    pub delivered: Vec<&'a Route>,
    /// The project keys of those uploads.
    pub accepted: Vec<&'a ProjectKey>,
    /// Devices whose uploads failed for a reason that may pass, after real attempts.
    pub failing: Vec<&'a Route>,
    /// Project keys Memfault refused.
    pub refused: Vec<&'a ProjectKey>,
}

/// Who is stalled: their kept records are set aside.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Stalled {
    pub devices: Vec<Route>,
    pub projects: Vec<ProjectKey>,
}

/// The environment's stall clocks, bounded: the least recently seen are forgotten first, which
/// at worst makes a device wait one more stall limit.
pub(crate) struct StallClocks {
    inner: Mutex<Clocks>,
    capacity: usize,
}

#[derive(Default)]
struct Clocks {
    devices: HashMap<Route, Clock>,
    projects: HashMap<ProjectKey, Clock>,
    /// The last invocation with evidence of Memfault being up.
    last_up: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    /// When the current run of failures began, in healthy time.
    since: Instant,
    /// When the clock was last advanced.
    seen: Instant,
}

impl Default for StallClocks {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl StallClocks {
    /// Failing devices a shard can hold at once are far fewer: a held batch has at most
    /// 10,000 records. Each entry is a route and two instants, about 150 bytes.
    pub(crate) const CAPACITY: usize = 10_000;

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Clocks::default()),
            capacity: capacity.max(1),
        }
    }

    /// Advances, clears or resets the clocks after one invocation, and says who is stalled.
    pub(crate) fn observe(
        &self,
        evidence: &Evidence<'_>,
        observed: &Observed<'_>,
        limit: Duration,
        now: Instant,
    ) -> Stalled {
        let mut clocks = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match evidence {
            Evidence::Unknown => return Stalled::default(),
            Evidence::Down => {
                clocks.reset();
                return Stalled::default();
            }
            Evidence::Up(_) => {}
        }
        let lapsed = clocks
            .last_up
            .is_none_or(|last| now.saturating_duration_since(last) > limit);
        if lapsed {
            clocks.reset();
        }
        clocks.last_up = Some(now);
        if !clocks.devices.is_empty() {
            for route in &observed.delivered {
                clocks.devices.remove(*route);
            }
        }
        if let (Evidence::Up(accepted), false) = (evidence, clocks.projects.is_empty()) {
            for key in accepted {
                clocks.projects.remove(*key);
            }
        }
        let mut stalled = Stalled::default();
        for route in &observed.failing {
            if advance(&mut clocks.devices, *route, now, limit, self.capacity) {
                stalled.devices.push((*route).clone());
            }
        }
        for key in &observed.refused {
            if evidence.up_for_others_than(key)
                && advance(&mut clocks.projects, *key, now, limit, self.capacity)
            {
                stalled.projects.push((*key).clone());
            }
        }
        stalled
    }

    /// Clocks running now, devices and projects together.
    #[cfg(test)]
    fn len(&self) -> usize {
        let clocks = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        clocks.devices.len() + clocks.projects.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Clocks {
    fn reset(&mut self) {
        self.devices.clear();
        self.projects.clear();
    }
}

/// Starts `who`'s clock, or advances it, and says whether it has run for `limit`.
fn advance<K: Hash + Eq + Clone>(
    clocks: &mut HashMap<K, Clock>,
    who: &K,
    now: Instant,
    limit: Duration,
    capacity: usize,
) -> bool {
    if !clocks.contains_key(who) && clocks.len() >= capacity {
        let oldest = clocks
            .iter()
            .min_by_key(|(_, clock)| clock.seen)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            clocks.remove(&oldest);
        }
    }
    let clock = clocks.entry(who.clone()).or_insert(Clock {
        since: now,
        seen: now,
    });
    clock.seen = now;
    now.saturating_duration_since(clock.since) >= limit
}

#[cfg(test)]
mod tests {
    use super::*;
    const LIMIT: Duration = Duration::from_secs(10);

    fn route(serial: &str, key: &str) -> Route {
        Route {
            device_serial: serial.parse().unwrap(),
            project_key: key.parse().unwrap(),
        }
    }

    fn up() -> Evidence<'static> {
        static KEY: std::sync::LazyLock<ProjectKey> =
            std::sync::LazyLock::new(|| "KeyB".parse().unwrap());
        Evidence::Up(vec![&*KEY])
    }

    fn failing(route: &Route) -> Observed<'_> {
        Observed {
            failing: vec![route],
            ..Observed::default()
        }
    }

    #[test]
    fn a_device_is_stalled_after_failing_for_the_limit_of_healthy_time() {
        let clocks = StallClocks::default();
        let sick = route("SICK", "KeyA");
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        for seconds in [0, 4, 8] {
            let stalled = clocks.observe(&up(), &failing(&sick), LIMIT, at(seconds));
            assert!(stalled.devices.is_empty(), "{seconds} s");
        }
        // Nothing to go by: no decision, and the clock is not reset either.
        let unknown = clocks.observe(&Evidence::Unknown, &failing(&sick), LIMIT, at(11));
        assert!(unknown.devices.is_empty());
        let stalled = clocks.observe(&up(), &failing(&sick), LIMIT, at(12));
        assert_eq!(stalled.devices, std::slice::from_ref(&sick));
        // Kept after the stall: the device's next failing records go at once.
        let again = clocks.observe(&up(), &failing(&sick), LIMIT, at(13));
        assert_eq!(again.devices, [sick]);
    }

    #[test]
    fn a_delivery_clears_a_device_and_an_outage_or_a_lapse_of_evidence_clears_all() {
        let clocks = StallClocks::default();
        let sick = route("SICK", "KeyA");
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        clocks.observe(&up(), &failing(&sick), LIMIT, at(0));
        let delivered = Observed {
            delivered: vec![&sick],
            ..Observed::default()
        };
        clocks.observe(&up(), &delivered, LIMIT, at(5));
        assert!(clocks.is_empty());

        clocks.observe(&up(), &failing(&sick), LIMIT, at(6));
        clocks.observe(&Evidence::Down, &failing(&sick), LIMIT, at(9));
        assert!(clocks.is_empty());
        let stalled = clocks.observe(&up(), &failing(&sick), LIMIT, at(17));
        assert!(stalled.devices.is_empty(), "the outage restarted the clock");

        // No evidence for longer than the limit: the time in between is not healthy time.
        clocks.observe(&up(), &failing(&sick), LIMIT, at(18));
        let stalled = clocks.observe(&up(), &failing(&sick), LIMIT, at(40));
        assert!(stalled.devices.is_empty());
    }

    #[test]
    fn a_refused_key_stalls_only_while_other_projects_are_accepted() {
        let clocks = StallClocks::default();
        let refused: ProjectKey = "KeyA".parse().unwrap();
        let observed = Observed {
            refused: vec![&refused],
            ..Observed::default()
        };
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let only_itself = Evidence::Up(vec![&refused]);
        clocks.observe(&only_itself, &observed, LIMIT, at(0));
        assert!(clocks.is_empty(), "no other project was accepted");
        clocks.observe(&up(), &observed, LIMIT, at(1));
        let stalled = clocks.observe(&up(), &observed, LIMIT, at(11));
        assert_eq!(stalled.projects, [refused]);
    }

    #[test]
    fn the_least_recently_seen_clock_is_forgotten_first() {
        let clocks = StallClocks::with_capacity(2);
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let [a, b, c] = ["A", "B", "C"].map(|serial| route(serial, "KeyA"));
        clocks.observe(&up(), &failing(&a), LIMIT, at(0));
        clocks.observe(&up(), &failing(&b), LIMIT, at(1));
        clocks.observe(&up(), &failing(&a), LIMIT, at(2));
        clocks.observe(&up(), &failing(&c), LIMIT, at(3));
        assert_eq!(clocks.len(), 2);
        let stalled = clocks.observe(&up(), &failing(&a), LIMIT, at(10));
        assert_eq!(stalled.devices, [a], "A was kept, B forgotten");
    }
}
