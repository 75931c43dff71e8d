//! Retry timing: exponential backoff with full jitter, and the server's `Retry-After`. Which
//! answers are worth another attempt is Memfault's classification (src/memfault/failure.rs).

use std::time::{Duration, SystemTime};

/// How an upload is retried: `MEMFAULT_MAX_ATTEMPTS`, `MEMFAULT_RETRY_BASE_DELAY_MS` and
/// `MEMFAULT_RETRY_MAX_DELAY_MS`, checked and defaulted in src/config.rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Attempts per upload, the first one included.
    pub max_attempts: u32,
    /// The backoff ceiling before the first retry; it doubles for each later retry.
    pub base_delay: Duration,
    /// No backoff waits longer than this, whatever the attempt number.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The backoff ceiling after `failed_attempts` failures (1 for the first retry).
    pub(crate) fn ceiling(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.saturating_sub(1).min(31);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    /// "Full jitter": a uniform draw below the ceiling, so that devices that failed together do
    /// not retry together. `unit` is a draw from [0, 1). A server's `Retry-After` is a floor.
    pub(crate) fn delay(
        &self,
        failed_attempts: u32,
        unit: f64,
        retry_after: Option<Duration>,
    ) -> Duration {
        let jittered = self.ceiling(failed_attempts).mul_f64(unit.clamp(0.0, 1.0));
        retry_after.map_or(jittered, |floor| floor.max(jittered))
    }
}

/// `Retry-After` as delta-seconds or as an HTTP date (RFC 9110 §10.2.3); a date in the past
/// means "now". Seconds too many to count are `Duration::MAX`: longer than any deadline, which
/// is what the server meant. Anything unparseable is ignored rather than trusted.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Only a number with more digits than u64 holds fails to parse here.
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1_000),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let ceilings: Vec<u128> = (1..=6).map(|n| policy().ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy().ceiling(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn jitter_spans_zero_to_the_ceiling() {
        assert_eq!(policy().delay(3, 0.0, None), Duration::ZERO);
        assert_eq!(policy().delay(3, 0.5, None), Duration::from_millis(200));
        assert!(policy().delay(3, 0.999_999, None) < Duration::from_millis(400));
        assert_eq!(policy().delay(3, 7.0, None), Duration::from_millis(400));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let floor = Duration::from_secs(2);
        assert_eq!(policy().delay(1, 0.9, Some(floor)), floor);
        let small_floor = Duration::from_millis(10);
        assert_eq!(
            policy().delay(4, 0.5, Some(small_floor)),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let now = httpdate::parse_http_date("Wed, 25 Nov 2026 12:00:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 12:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(&"9".repeat(30), now), Some(Duration::MAX));
        assert_eq!(
            parse_retry_after("18446744073709551615", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
