//! Stall clocks: how long a device, or a project whose key Memfault refuses, has kept failing
//! in healthy time (`healthy_time`). They live in the execution environment, not in one
//! invocation, because a held shard sends the same records again and again: most of a retried
//! batch is answered from the memory of settled records, so what one invocation holds says
//! nothing about how long a device has been failing (docs/delivery.md, "Stalled devices").
//!
//! A clock measures one continuous run of failures. It starts when its device fails (or its
//! project's key is refused) and starts again when the run is over: when the device delivers
//! here, when the record it fails on is no longer the one it failed on before (an earlier record
//! was delivered or set aside elsewhere: a resend of the shard may reach any environment), when
//! it has not been seen failing for the stall limit, and when an outage ends an era of healthy
//! time. A device is stalled once its clock has run for the stall limit, both in healthy time
//! and on the wall clock. After a stall the clock is kept while the device keeps failing, so
//! that its later records are set aside at once instead of holding the shard for another stall
//! limit each.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::healthy_time::{HealthyTime, Reading};
use crate::routing::{ProjectKey, Route};
use crate::settled::RecordKey;

/// A device that failed in an invocation, and the record its run of failures stands at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failing<'a> {
    pub route: &'a Route,
    /// The device's first record that was not delivered.
    pub head: Option<RecordKey>,
}

/// What one invocation saw of its devices and keys, for the clocks.
#[derive(Debug, Default)]
pub(crate) struct Observed<'a> {
    /// Devices with at least one upload accepted.
    pub delivered: Vec<&'a Route>,
    /// The project keys of those uploads.
    pub accepted: Vec<&'a ProjectKey>,
    /// Devices whose uploads failed for a reason that may pass, after real attempts.
    pub failing: Vec<Failing<'a>>,
    /// Project keys Memfault refused.
    pub refused: Vec<&'a ProjectKey>,
}

/// What an invocation of any source showed of Memfault.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Seen {
    /// Memfault accepted at least one upload.
    pub accepted: bool,
    /// Every device started failed, with no delivery between them: a sign of an outage.
    pub outage: bool,
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeResult {
    Accepted,
    /// Failed as in an outage: a transient failure after a real attempt.
    Failed,
    /// Nothing to go by: no attempt, or an answer about the chunk or the key.
    Inconclusive,
}

/// Who is stalled: their kept records are set aside.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Stalled {
    pub devices: Vec<Route>,
    pub projects: Vec<ProjectKey>,
}

/// The environment's healthy time and stall clocks, bounded: the least recently seen clocks are
/// forgotten first, which at worst makes a device wait one more stall limit.
pub(crate) struct StallClocks {
    inner: Mutex<State>,
    limit: Duration,
    capacity: usize,
}

struct State {
    health: HealthyTime,
    devices: HashMap<Route, Clock>,
    projects: HashMap<ProjectKey, Clock>,
}

#[derive(Debug, Clone, Copy)]
struct Clock {
    /// When the run of failures began, on the wall clock and in healthy time.
    started: Instant,
    reading: Reading,
    /// The record the run stands at (devices only).
    head: Option<RecordKey>,
    /// When it was last seen failing.
    seen: Instant,
    stalled: bool,
}

impl StallClocks {
    /// Failing devices a shard can hold at once are far fewer: a held batch has at most
    /// 10,000 records. Each entry is a route, a record key, two instants and a reading.
    pub(crate) const CAPACITY: usize = 10_000;

    pub(crate) fn new(limit: Duration) -> Self {
        Self::with_capacity(limit, Self::CAPACITY)
    }

    pub(crate) fn with_capacity(limit: Duration, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(State {
                health: HealthyTime::new(limit),
                devices: HashMap::new(),
                projects: HashMap::new(),
            }),
            limit,
            capacity: capacity.max(1),
        }
    }

    /// What an invocation of any source showed of Memfault: acceptances count healthy time
    /// whatever their source.
    pub(crate) fn note_invocation(&self, seen: Seen, invoked: Instant, now: Instant) {
        let mut state = self.state();
        if seen.outage {
            state.health.doubted();
        }
        if seen.accepted {
            state.health.accepted(invoked, now);
        }
    }

    /// The environment spent `span` writing to the quarantine queue: no sign of Memfault either
    /// way (`healthy_time`).
    pub(crate) fn note_unasked(&self, span: Duration) {
        self.state().health.unasked(span);
    }

    /// Whether a decision may use a probe now: nothing has shown Memfault up for a probe
    /// interval, and no probe went out in that time.
    pub(crate) fn probe_due(&self, now: Instant) -> bool {
        self.state().health.probe_due(now)
    }

    pub(crate) fn note_probe(&self, result: ProbeResult, invoked: Instant, now: Instant) {
        let mut state = self.state();
        state.health.probed(now);
        match result {
            ProbeResult::Accepted => state.health.accepted(invoked, now),
            ProbeResult::Failed => state.health.doubted(),
            ProbeResult::Inconclusive => {}
        }
    }

    /// Starts, advances or clears the clocks after one stream invocation, and says who is
    /// stalled.
    pub(crate) fn decide(&self, observed: &Observed<'_>, now: Instant) -> Stalled {
        let limit = self.limit;
        let capacity = self.capacity;
        let mut state = self.state();
        let reading = state.health.reading();
        let State {
            devices, projects, ..
        } = &mut *state;
        for route in &observed.delivered {
            devices.remove(*route);
        }
        for key in &observed.accepted {
            projects.remove(*key);
        }
        let long_unseen = |clock: &Clock| now.saturating_duration_since(clock.seen) > limit;
        devices.retain(|_, clock| !long_unseen(clock));
        projects.retain(|_, clock| !long_unseen(clock));
        let run = Run {
            now,
            reading,
            limit,
            capacity,
        };
        let mut stalled = Stalled::default();
        for failing in &observed.failing {
            if run.advance(devices, failing.route, failing.head) {
                stalled.devices.push(failing.route.clone());
            }
        }
        for key in &observed.refused {
            if run.advance(projects, *key, None) {
                stalled.projects.push((*key).clone());
            }
        }
        stalled
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves at worst a clock that starts again.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Clocks running now, devices and projects together.
    #[cfg(test)]
    fn len(&self) -> usize {
        let state = self.state();
        state.devices.len() + state.projects.len()
    }
}

/// One decision's view of time.
struct Run {
    now: Instant,
    reading: Reading,
    limit: Duration,
    capacity: usize,
}

impl Run {
    /// Starts `who`'s clock, restarts it when its run of failures is over, or advances it, and
    /// says whether it has run for the stall limit.
    fn advance<K: Hash + Eq + Clone>(
        &self,
        clocks: &mut HashMap<K, Clock>,
        who: &K,
        head: Option<RecordKey>,
    ) -> bool {
        if !clocks.contains_key(who) && clocks.len() >= self.capacity {
            let oldest = clocks
                .iter()
                .min_by_key(|(_, clock)| clock.seen)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                clocks.remove(&oldest);
            }
        }
        let fresh = Clock {
            started: self.now,
            reading: self.reading,
            head,
            seen: self.now,
            stalled: false,
        };
        let clock = clocks.entry(who.clone()).or_insert(fresh);
        let outage_since = clock.reading.era != self.reading.era;
        let moved_on = clock.head != head && !clock.stalled;
        if outage_since || moved_on {
            *clock = fresh;
        }
        clock.head = head;
        clock.seen = self.now;
        let healthy = self.reading.counted.saturating_sub(clock.reading.counted);
        let wall = self.now.saturating_duration_since(clock.started);
        clock.stalled |= healthy >= self.limit && wall >= self.limit;
        clock.stalled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settled::SettledMemory;

    const LIMIT: Duration = Duration::from_secs(10);

    fn route(serial: &str, key: &str) -> Route {
        Route {
            device_serial: serial.parse().unwrap(),
            project_key: key.parse().unwrap(),
        }
    }

    fn failing(route: &Route, head: RecordKey) -> Observed<'_> {
        Observed {
            failing: vec![Failing {
                route,
                head: Some(head),
            }],
            ..Observed::default()
        }
    }

    /// An invocation at `seconds` in which other devices delivered.
    fn healthy_invocation(clocks: &StallClocks, start: Instant, seconds: u64) -> Instant {
        let now = start + Duration::from_secs(seconds);
        let seen = Seen {
            accepted: true,
            outage: false,
        };
        clocks.note_invocation(seen, now, now);
        now
    }

    fn records() -> (RecordKey, RecordKey) {
        let memory = SettledMemory::default();
        (memory.key(&["s", "1"]), memory.key(&["s", "2"]))
    }

    #[test]
    fn a_device_is_stalled_after_failing_for_the_limit_of_healthy_time_and_stays_stalled() {
        let clocks = StallClocks::new(LIMIT);
        let sick = route("SICK", "KeyA");
        let (first, second) = records();
        let start = Instant::now();
        for seconds in [0, 3, 6, 9] {
            let now = healthy_invocation(&clocks, start, seconds);
            let stalled = clocks.decide(&failing(&sick, first), now);
            assert!(stalled.devices.is_empty(), "{seconds} s");
        }
        let now = healthy_invocation(&clocks, start, 10);
        let stalled = clocks.decide(&failing(&sick, first), now);
        assert_eq!(stalled.devices, std::slice::from_ref(&sick));
        // Its next record, failing the same way, goes at once.
        let now = healthy_invocation(&clocks, start, 11);
        assert_eq!(clocks.decide(&failing(&sick, second), now).devices, [sick]);
    }

    #[test]
    fn noise_neither_stops_nor_resets_a_clock_but_an_outage_does() {
        let clocks = StallClocks::new(LIMIT);
        let sick = route("SICK", "KeyA");
        let (head, _) = records();
        let start = Instant::now();
        let now = healthy_invocation(&clocks, start, 0);
        clocks.decide(&failing(&sick, head), now);
        for seconds in [2, 4, 6, 8] {
            let now = start + Duration::from_secs(seconds);
            // One failed probe between two acceptances: noise.
            let before = now - Duration::from_secs(1);
            clocks.note_probe(ProbeResult::Failed, before, before);
            clocks.note_probe(ProbeResult::Accepted, now, now);
            assert!(clocks.decide(&failing(&sick, head), now).devices.is_empty());
        }
        let now = healthy_invocation(&clocks, start, 10);
        assert_eq!(clocks.decide(&failing(&sick, head), now).devices.len(), 1);

        let clocks = StallClocks::new(LIMIT);
        let now = healthy_invocation(&clocks, start, 0);
        clocks.decide(&failing(&sick, head), now);
        // Two signs of an outage in a row: the stretch is not healthy time.
        let (one, two) = (
            start + Duration::from_secs(1),
            start + Duration::from_secs(2),
        );
        let outage = Seen {
            accepted: false,
            outage: true,
        };
        clocks.note_invocation(outage, one, one);
        clocks.note_probe(ProbeResult::Failed, two, two);
        for seconds in [3, 6, 9, 12] {
            let now = healthy_invocation(&clocks, start, seconds);
            assert!(clocks.decide(&failing(&sick, head), now).devices.is_empty());
        }
        let now = healthy_invocation(&clocks, start, 13);
        assert_eq!(clocks.decide(&failing(&sick, head), now).devices.len(), 1);
    }

    #[test]
    fn a_run_of_failures_ends_when_the_device_moves_on_or_is_not_seen_failing() {
        let clocks = StallClocks::new(LIMIT);
        let sick = route("SICK", "KeyA");
        let (first, second) = records();
        let start = Instant::now();
        for seconds in [0, 3, 6] {
            let now = healthy_invocation(&clocks, start, seconds);
            clocks.decide(&failing(&sick, first), now);
        }
        // Another environment delivered the record: this one sees the device fail on a later one.
        for seconds in [9, 12, 15, 18] {
            let now = healthy_invocation(&clocks, start, seconds);
            let stalled = clocks.decide(&failing(&sick, second), now);
            assert!(stalled.devices.is_empty(), "{seconds} s: a new run");
        }
        assert_eq!(
            clocks
                .decide(
                    &failing(&sick, second),
                    healthy_invocation(&clocks, start, 19)
                )
                .devices
                .len(),
            1
        );

        let clocks = StallClocks::new(LIMIT);
        let now = healthy_invocation(&clocks, start, 0);
        clocks.decide(&failing(&sick, first), now);
        // Not seen failing for longer than the limit, though healthy time went on.
        for seconds in (3..=21).step_by(3) {
            let now = healthy_invocation(&clocks, start, seconds);
            clocks.decide(&Observed::default(), now);
        }
        let now = healthy_invocation(&clocks, start, 22);
        assert!(
            clocks
                .decide(&failing(&sick, first), now)
                .devices
                .is_empty()
        );
        assert_eq!(
            clocks.len(),
            1,
            "the old clock was dropped, a new one started"
        );
    }

    #[test]
    fn a_refused_key_stalls_only_in_healthy_time_and_clears_when_accepted() {
        let clocks = StallClocks::new(LIMIT);
        let refused: ProjectKey = "KeyA".parse().unwrap();
        let observed = Observed {
            refused: vec![&refused],
            ..Observed::default()
        };
        let start = Instant::now();
        // Nothing accepted: no healthy time, however long the key is refused.
        for seconds in [0, 5, 10, 15] {
            let now = start + Duration::from_secs(seconds);
            assert!(clocks.decide(&observed, now).projects.is_empty());
        }
        let clocks = StallClocks::new(LIMIT);
        for seconds in [0, 3, 6, 9] {
            let now = healthy_invocation(&clocks, start, seconds);
            assert!(clocks.decide(&observed, now).projects.is_empty());
        }
        let now = healthy_invocation(&clocks, start, 10);
        assert_eq!(
            clocks.decide(&observed, now).projects,
            std::slice::from_ref(&refused)
        );
        let accepted = Observed {
            accepted: vec![&refused],
            ..Observed::default()
        };
        clocks.decide(&accepted, now);
        assert_eq!(clocks.len(), 0);
    }

    #[test]
    fn the_least_recently_seen_clock_is_forgotten_first() {
        let clocks = StallClocks::with_capacity(LIMIT, 2);
        let start = Instant::now();
        let (head, _) = records();
        let [a, b, c] = ["A", "B", "C"].map(|serial| route(serial, "KeyA"));
        for (seconds, device) in [(0, &a), (1, &b), (2, &a), (3, &c)] {
            let now = healthy_invocation(&clocks, start, seconds);
            clocks.decide(&failing(device, head), now);
        }
        assert_eq!(clocks.len(), 2);
        for seconds in [5, 8] {
            let now = healthy_invocation(&clocks, start, seconds);
            clocks.decide(&failing(&a, head), now);
        }
        let now = healthy_invocation(&clocks, start, 10);
        let stalled = clocks.decide(&failing(&a, head), now);
        assert_eq!(stalled.devices, [a], "A was kept, B forgotten");
    }
}
