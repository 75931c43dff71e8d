//! Healthy time: how much time this execution environment can vouch for Memfault being up.
//!
//! Memfault is known to be up at the moments it accepts an upload: any device's, from any
//! source, or a probe's. The time between two such moments counts as healthy when they are at
//! most three probe intervals apart (or three times the invocation that ends it, when a device
//! whose uploads hang makes invocations long) and at most one sign of an outage came between
//! them (a failed probe, or an invocation whose devices all failed with no delivery between them). One
//! failed request among deliveries is noise, and noise neither stops nor resets the count; two
//! signs in a row, or a gap nobody can vouch for, are an outage: that stretch does not count and
//! every stall clock starts again (docs/delivery.md, "Stalled devices and projects"). Time spent
//! writing set-aside records to the quarantine queue asked Memfault nothing: it is left out of a
//! stretch, neither healthy nor a silence, so that setting a stalled batch aside is not taken
//! for an outage that would start the clocks of the records behind it again.

use std::time::Duration;

use tokio::time::Instant;

/// The count, as a stall clock reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reading {
    /// Healthy time counted since the environment started.
    pub counted: Duration,
    /// How many stretches did not count: a clock started in an earlier era starts again.
    pub era: u64,
}

#[derive(Debug)]
pub(super) struct HealthyTime {
    /// The time between two probes when nothing else shows Memfault up.
    probe_interval: Duration,
    reading: Reading,
    last_accepted: Option<Instant>,
    /// Time since the last acceptance in which Memfault was not asked anything.
    unasked: Duration,
    /// Signs of an outage since the last acceptance.
    doubts: u32,
    last_probe: Option<Instant>,
}

impl HealthyTime {
    /// Probes per stall limit, at most, in a held shard: a stall needs about this many
    /// acceptances in a row, each at most three probe intervals from the last.
    pub(super) const PROBES_PER_STALL_LIMIT: u32 = 10;
    /// The longest stretch between two acceptances that still counts, in probe intervals (or
    /// in invocations, when those are longer): one failed probe between two good ones
    /// stretches it to two.
    const LONGEST_COUNTED_STRETCH: u32 = 3;
    /// Signs of an outage a stretch may hold and still count: one is noise, two are not.
    const DOUBTS_TOLERATED: u32 = 1;

    pub(super) fn new(stall_limit: Duration) -> Self {
        Self {
            probe_interval: stall_limit / Self::PROBES_PER_STALL_LIMIT,
            reading: Reading {
                counted: Duration::ZERO,
                era: 0,
            },
            last_accepted: None,
            unasked: Duration::ZERO,
            doubts: 0,
            last_probe: None,
        }
    }

    pub(super) fn reading(&self) -> Reading {
        self.reading
    }

    /// Memfault accepted an upload at `now`, in an invocation that began at `invoked`.
    pub(super) fn accepted(&mut self, invoked: Instant, now: Instant) {
        if let Some(last) = self.last_accepted {
            let stretch = now
                .saturating_duration_since(last)
                .saturating_sub(self.unasked);
            let invocation = now.saturating_duration_since(invoked);
            let longest = self.probe_interval.max(invocation) * Self::LONGEST_COUNTED_STRETCH;
            if stretch <= longest && self.doubts <= Self::DOUBTS_TOLERATED {
                self.reading.counted += stretch;
            } else {
                self.reading.era += 1;
            }
        }
        self.last_accepted = Some(now.max(self.last_accepted.unwrap_or(now)));
        self.unasked = Duration::ZERO;
        self.doubts = 0;
    }

    /// The environment spent `span` on work that asked Memfault nothing (writing to the
    /// quarantine queue).
    pub(super) fn unasked(&mut self, span: Duration) {
        self.unasked = self.unasked.saturating_add(span);
    }

    /// A sign of an outage: a failed probe, or every device of an invocation failing.
    pub(super) fn doubted(&mut self) {
        self.doubts = self.doubts.saturating_add(1);
    }

    /// Whether a probe may be sent: nothing has shown Memfault up for a probe interval, and
    /// no probe was sent in that time either.
    pub(super) fn probe_due(&self, now: Instant) -> bool {
        let older_than_interval = |at: Option<Instant>| {
            at.is_none_or(|at| now.saturating_duration_since(at) >= self.probe_interval)
        };
        older_than_interval(self.last_accepted) && older_than_interval(self.last_probe)
    }

    pub(super) fn probed(&mut self, now: Instant) {
        self.last_probe = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(10);

    fn at(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn acceptances_close_together_count_and_one_failed_probe_between_them_is_noise() {
        let start = Instant::now();
        let mut health = HealthyTime::new(LIMIT);
        health.accepted(at(start, 0), at(start, 0));
        health.accepted(at(start, 1_000), at(start, 1_000));
        assert_eq!(health.reading().counted, Duration::from_secs(1));
        health.doubted();
        health.accepted(at(start, 3_000), at(start, 3_000));
        assert_eq!(
            health.reading(),
            Reading {
                counted: Duration::from_secs(3),
                era: 0
            }
        );
    }

    #[test]
    fn two_signs_of_an_outage_or_a_long_silence_do_not_count_and_start_a_new_era() {
        let start = Instant::now();
        let mut health = HealthyTime::new(LIMIT);
        health.accepted(at(start, 0), at(start, 0));
        health.doubted();
        health.doubted();
        health.accepted(at(start, 2_000), at(start, 2_000));
        assert_eq!(health.reading().counted, Duration::ZERO);
        assert_eq!(health.reading().era, 1);
        // Three probe intervals (3 s here) is the longest stretch that counts.
        health.accepted(at(start, 5_000), at(start, 5_000));
        assert_eq!(health.reading().counted, Duration::from_secs(3));
        health.accepted(at(start, 8_001), at(start, 8_001));
        assert_eq!(health.reading().era, 2);
        assert_eq!(health.reading().counted, Duration::from_secs(3));
        // Unless the invocation that ends the stretch took that long itself.
        health.accepted(at(start, 9_000), at(start, 12_001));
        assert_eq!(health.reading().counted, Duration::from_secs(7));
    }

    #[test]
    fn time_spent_not_asking_memfault_is_neither_healthy_nor_a_silence() {
        let start = Instant::now();
        let mut health = HealthyTime::new(LIMIT);
        health.accepted(at(start, 0), at(start, 0));
        // Four seconds apart, three of them spent writing set-aside records.
        health.unasked(Duration::from_secs(3));
        health.accepted(at(start, 4_000), at(start, 4_000));
        assert_eq!(
            health.reading(),
            Reading {
                counted: Duration::from_secs(1),
                era: 0
            }
        );
        // Counted once: the next stretch is measured whole again.
        health.accepted(at(start, 8_000), at(start, 8_000));
        assert_eq!(health.reading().era, 1);
    }

    #[test]
    fn a_probe_is_due_only_after_a_probe_interval_without_acceptance_or_probe() {
        let start = Instant::now();
        let mut health = HealthyTime::new(LIMIT);
        assert!(health.probe_due(start), "nothing ever showed Memfault up");
        health.accepted(start, start);
        assert!(!health.probe_due(at(start, 999)));
        assert!(health.probe_due(at(start, 1_000)));
        health.probed(at(start, 1_000));
        assert!(!health.probe_due(at(start, 1_500)));
        assert!(health.probe_due(at(start, 2_000)));
    }
}
