//! Configuration from environment variables, validated once at init.
//!
//! A setting lives here in one place: its [`Variable`] (name, parser, how an error shows its
//! value, default), the [`Config`] field it fills, and the one line of [`Config::from_lookup`]
//! that reads it. The list of names an environment may hold is what `from_lookup` reads, so a
//! variable declared and read is known, and nothing else is. docs/development.md has an example.

use std::cell::RefCell;
use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;
use tokio::time::Instant;

use crate::aws::{AwsIdentity, BucketUrl, QueueUrl};
use crate::redact::{redact, redact_key_like, redact_project_keys, redact_url};
use crate::retry::RetryPolicy;
use crate::routing::{
    DEFAULT_TOPIC_PATTERN, KeySource, ProjectKey, ProjectKeys, Router, TopicPattern,
};
pub use crate::url::ChunksUrl;

/// Devices uploaded at once, `MEMFAULT_UPLOAD_CONCURRENCY`'s default: a batch of 500 devices at
/// a 50 ms round trip takes ceil(500 / 64) = 8 round trips, so one invocation keeps up with a
/// shard's 1,000 records/s (docs/benchmark.md).
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 64;
/// The least time uploads leave between giving up and the invocation deadline
/// (`MEMFAULT_DEADLINE_MARGIN_MS`), so that the function can still log, count and answer. Giving
/// up, logging and answering take well under a millisecond for a direct event and tens of
/// milliseconds for a batch of a thousand devices on a fast machine; Lambda's smallest memory
/// setting has a small fraction of one vCPU, so this leaves room for that many times over.
/// Larger batches want the default or more.
pub const MIN_DEADLINE_MARGIN: Duration = Duration::from_millis(100);
/// How much of an invocation's time uploads leave to the quarantine queue's writes, before the
/// margin: two SQS round trips (the write and its one retry) in the function's own region.
/// docs/delivery.md ("Deadlines") gives the arithmetic.
const QUARANTINE_WRITE_BUDGET: Duration = Duration::from_millis(500);

/// A configuration variable with a value that cannot work. The message names the variable and
/// the problem, and quotes the value with anything that may be a secret in it redacted.
#[derive(Debug, Error)]
#[error("invalid configuration: {variable}={shown}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    shown: String,
    problem: String,
}

/// The function's settings. Only [`Config::from_lookup`] (and [`Config::from_env`] through it)
/// makes one, so every value in it passed its variable's checks: nothing downstream re-checks.
#[derive(Debug, Clone)]
pub struct Config {
    chunks_url: ChunksUrl,
    /// `MEMFAULT_TOPIC_PATTERN` with where project keys come from: `MEMFAULT_PROJECT_KEY` (one
    /// project), `MEMFAULT_PROJECT_KEYS` (a project per topic slug), or each message.
    router: Router,
    retry: RetryPolicy,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// `None` turns CloudWatch embedded metrics off.
    metrics_namespace: Option<String>,
    batch_max_chunks: NonZeroUsize,
    upload_concurrency: NonZeroUsize,
    /// How long a stream device's failing record may hold its shard while other devices are
    /// delivered, before its records are set aside.
    stall_limit: Duration,
    /// Where records that can never be delivered are written; `None` leaves them with their
    /// source, reported as failures.
    quarantine: Option<QuarantineSettings>,
    /// How the time before each invocation's deadline is shared out.
    time_budget: TimeBudget,
}

/// The quarantine queue, the stream failure bucket beside it (for records too large for the
/// queue), and the identity both are written as.
#[derive(Debug, Clone)]
pub(crate) struct QuarantineSettings {
    pub queue: QueueUrl,
    pub bucket: Option<BucketUrl>,
    pub identity: AwsIdentity,
}

/// How the time before an invocation's deadline is shared out (docs/delivery.md, "Deadlines"):
/// uploads stop at the upload bound, the margin and, with a quarantine queue, its write budget
/// before the deadline; a probe may take half of that write budget; writes to the quarantine
/// stop at the margin, so that the function can still log, count and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeBudget {
    margin: Duration,
    write_budget: Duration,
}

impl TimeBudget {
    fn new(margin: Duration, quarantine: bool) -> Self {
        let write_budget = if quarantine {
            QUARANTINE_WRITE_BUDGET
        } else {
            Duration::ZERO
        };
        Self {
            margin,
            write_budget,
        }
    }

    /// When uploads give up.
    pub(crate) fn upload_bound(&self, deadline: Instant) -> Instant {
        before(deadline, self.margin + self.write_budget)
    }

    /// When a probe, made after the invocation's uploads, gives up: a device whose uploads ran
    /// to the upload bound still leaves it half of the write budget, and the writes the other.
    pub(crate) fn probe_bound(&self, deadline: Instant) -> Instant {
        before(deadline, self.margin + self.write_budget / 2)
    }

    /// When writes to the quarantine give up.
    pub(crate) fn write_bound(&self, deadline: Instant) -> Instant {
        before(deadline, self.margin)
    }
}

fn before(deadline: Instant, margin: Duration) -> Instant {
    deadline.checked_sub(margin).unwrap_or(deadline)
}

/// One environment variable: its name, how its text becomes a value, how an error shows a value
/// it refuses (redacted wherever the value may hold a secret), and the text it has when it is
/// not set, read by the same parser. A variable declared `Variable<Option<_>>` is optional.
struct Variable<T> {
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
    show: fn(&str) -> String,
    default: &'static str,
}

// The variables, in the order of `Config`'s fields.
const CHUNKS_URL: Variable<ChunksUrl> = Variable {
    name: "MEMFAULT_CHUNKS_URL",
    parse: from_str,
    show: |text| format!("{:?}", redact_url(text)),
    default: "https://chunks.memfault.com",
};
const PROJECT_KEY: Variable<Option<ProjectKey>> = Variable {
    name: "MEMFAULT_PROJECT_KEY",
    parse: empty_is_unset,
    show: redact,
    default: "",
};
const PROJECT_KEYS: Variable<Option<ProjectKeys>> = Variable {
    name: "MEMFAULT_PROJECT_KEYS",
    parse: |text| empty_is_unset(text.trim()),
    show: |text| format!("{:?}", redact_project_keys(text)),
    default: "",
};
const TOPIC_PATTERN: Variable<TopicPattern> = Variable {
    name: "MEMFAULT_TOPIC_PATTERN",
    parse: from_str,
    show: |text| format!("{:?}", redact_key_like(text)),
    default: DEFAULT_TOPIC_PATTERN,
};
const MAX_ATTEMPTS: Variable<u32> = plain("MEMFAULT_MAX_ATTEMPTS", whole::<u32, 1, 20>, "4");
const RETRY_BASE_DELAY: Variable<Duration> =
    plain("MEMFAULT_RETRY_BASE_DELAY_MS", millis::<1, 60_000>, "200");
const RETRY_MAX_DELAY: Variable<Duration> =
    plain("MEMFAULT_RETRY_MAX_DELAY_MS", millis::<1, 300_000>, "5000");
const CONNECT_TIMEOUT: Variable<Duration> =
    plain("MEMFAULT_CONNECT_TIMEOUT_MS", millis::<1, 60_000>, "2000");
const REQUEST_TIMEOUT: Variable<Duration> =
    plain("MEMFAULT_REQUEST_TIMEOUT_MS", millis::<1, 900_000>, "10000");
const DEADLINE_MARGIN: Variable<Duration> = plain(
    "MEMFAULT_DEADLINE_MARGIN_MS",
    millis::<{ MIN_DEADLINE_MARGIN.as_millis() as u64 }, 60_000>,
    "500",
);
/// Set but empty turns metrics off.
const METRICS_NAMESPACE: Variable<Option<String>> = plain(
    "MEMFAULT_METRICS_NAMESPACE",
    |text| match text {
        "" => Ok(None),
        name => check_namespace(name).map(Some),
    },
    "MemfaultChunkProxy",
);
const BATCH_MAX_CHUNKS: Variable<NonZeroUsize> =
    plain("MEMFAULT_BATCH_MAX_CHUNKS", some::<10_000>, "500");
const UPLOAD_CONCURRENCY: Variable<NonZeroUsize> =
    plain("MEMFAULT_UPLOAD_CONCURRENCY", some::<256>, "64");
const STALL_LIMIT: Variable<Duration> = plain(
    "MEMFAULT_STALL_LIMIT_SECONDS",
    |text| whole::<u64, 1, 604_800>(text).map(Duration::from_secs),
    "300",
);
const QUARANTINE_QUEUE_URL: Variable<Option<QueueUrl>> =
    plain("MEMFAULT_QUARANTINE_QUEUE_URL", empty_is_unset, "");
const STREAM_FAILURE_BUCKET_URL: Variable<Option<BucketUrl>> =
    plain("MEMFAULT_STREAM_FAILURE_BUCKET_URL", empty_is_unset, "");

/// Variables renamed before 0.1.0 (CHANGELOG.md), each with its new name.
const RENAMED: [(&str, &str); 2] = [
    ("MEMFAULT_FAILURE_QUEUE_URL", QUARANTINE_QUEUE_URL.name),
    (
        "MEMFAULT_FAILURE_BUCKET_URL",
        STREAM_FAILURE_BUCKET_URL.name,
    ),
];
const PREFIX: &str = "MEMFAULT_";

/// A variable whose value holds no secret: an error quotes it as it is.
const fn plain<T>(
    name: &'static str,
    parse: fn(&str) -> Result<T, String>,
    default: &'static str,
) -> Variable<T> {
    Variable {
        name,
        parse,
        show: |text| format!("{text:?}"),
        default,
    }
}

fn from_str<T: FromStr<Err: fmt::Display>>(text: &str) -> Result<T, String> {
    text.parse().map_err(|problem: T::Err| problem.to_string())
}

/// For values that templates pass through empty when they are not given.
fn empty_is_unset<T: FromStr<Err: fmt::Display>>(text: &str) -> Result<Option<T>, String> {
    match text {
        "" => Ok(None),
        text => from_str(text).map(Some),
    }
}

/// A whole number from `MIN` to `MAX`, white space around it aside.
fn whole<T: TryFrom<u64>, const MIN: u64, const MAX: u64>(text: &str) -> Result<T, String> {
    let number: u64 = text
        .trim()
        .parse()
        .map_err(|_| "is not a whole number".to_owned())?;
    match T::try_from(number) {
        Ok(value) if (MIN..=MAX).contains(&number) => Ok(value),
        _ => Err(format!("must be between {MIN} and {MAX}")),
    }
}

/// A count from 1 to `MAX`.
fn some<const MAX: u64>(text: &str) -> Result<NonZeroUsize, String> {
    let count = whole::<usize, 1, MAX>(text)?;
    NonZeroUsize::new(count).ok_or_else(|| format!("must be between 1 and {MAX}"))
}

fn millis<const MIN: u64, const MAX: u64>(text: &str) -> Result<Duration, String> {
    whole::<u64, MIN, MAX>(text).map(Duration::from_millis)
}

/// Reads variables through `lookup`, so that tests need not touch the process environment,
/// and notes every variable it is asked for, by name and default.
struct Reader<F> {
    lookup: F,
    asked: RefCell<Vec<(&'static str, &'static str)>>,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn new(lookup: F) -> Self {
        Self {
            lookup,
            asked: RefCell::default(),
        }
    }

    /// The variable's value: its default's when it is not set.
    fn get<T>(&self, variable: &Variable<T>) -> Result<T, ConfigError> {
        self.asked
            .borrow_mut()
            .push((variable.name, variable.default));
        let text = (self.lookup)(variable.name);
        let text = text.as_deref().unwrap_or(variable.default);
        (variable.parse)(text).map_err(|problem| ConfigError {
            variable: variable.name.into(),
            shown: (variable.show)(text),
            problem,
        })
    }

    /// A variable Lambda sets for every function, needed here because `needed_by` is set.
    fn required(&self, variable: &'static str, needed_by: &str) -> Result<String, ConfigError> {
        (self.lookup)(variable)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ConfigError {
                variable: variable.into(),
                shown: "(unset)".into(),
                problem: format!("is needed to sign requests to {needed_by} (Lambda sets it)"),
            })
    }
}

impl Config {
    /// The process environment's configuration. A `MEMFAULT_` variable it would not read is
    /// refused first ([`Config::check_names`]): a typo can be what makes another value wrong.
    pub fn from_env() -> Result<Self, ConfigError> {
        let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
        Self::check_names(names)?;
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Refuses any `MEMFAULT_` variable among `names` (in any letter case) that is not one of the
    /// function's: nothing would read it, so a deployment upgraded from a release that had it,
    /// or with a typo in it, would run without that setting and without a word, e.g. without
    /// its quarantine queue. The message names the variable, never its value (it may be a key):
    /// a renamed one with its new name, a misspelt one with the name it is closest to.
    pub fn check_names(names: impl IntoIterator<Item = String>) -> Result<(), ConfigError> {
        let known = names_read();
        let mut unread: Vec<String> = names
            .into_iter()
            .filter(|name| {
                name.to_ascii_uppercase().starts_with(PREFIX) && !known.contains(&name.as_str())
            })
            .collect();
        // The environment's order is arbitrary: the same deployment always names the same one.
        unread.sort_unstable_by_key(|name| (renamed(name).is_none(), name.clone()));
        let Some(variable) = unread.into_iter().next() else {
            return Ok(());
        };
        let problem = match (renamed(&variable), closest_name(&variable, &known)) {
            (Some(new), _) => format!(
                "was renamed {new} in 0.1.0 and is no longer read; set {new} instead (CHANGELOG.md)"
            ),
            (None, Some(near)) => format!(
                "is not a setting of this function and would be ignored; did you mean {near}? (the {PREFIX} prefix is kept for its settings)"
            ),
            (None, None) => format!(
                "is not a setting of this function and would be ignored; remove it (the {PREFIX} prefix is kept for its settings: docs/configuration.md)"
            ),
        };
        Err(ConfigError {
            variable,
            shown: "(set)".into(),
            problem,
        })
    }

    /// The configuration of an environment in which `lookup` finds each variable's value: the
    /// one way to make a `Config`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&Reader::new(lookup))
    }

    fn read<F: Fn(&str) -> Option<String>>(env: &Reader<F>) -> Result<Self, ConfigError> {
        let router = router(env)?;
        let retry = retry(env)?;
        let quarantine = quarantine(env)?;
        let metrics_namespace = env.get(&METRICS_NAMESPACE)?;
        let chunks_url = env.get(&CHUNKS_URL)?;
        let connect_timeout = env.get(&CONNECT_TIMEOUT)?;
        let request_timeout = env.get(&REQUEST_TIMEOUT)?;
        let margin = env.get(&DEADLINE_MARGIN)?;
        Ok(Self {
            chunks_url,
            router,
            retry,
            connect_timeout,
            request_timeout,
            metrics_namespace,
            batch_max_chunks: env.get(&BATCH_MAX_CHUNKS)?,
            upload_concurrency: env.get(&UPLOAD_CONCURRENCY)?,
            stall_limit: env.get(&STALL_LIMIT)?,
            time_budget: TimeBudget::new(margin, quarantine.is_some()),
            quarantine,
        })
    }

    pub(crate) fn chunks_url(&self) -> &ChunksUrl {
        &self.chunks_url
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub(crate) fn retry(&self) -> RetryPolicy {
        self.retry
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    pub(crate) fn metrics_namespace(&self) -> Option<&str> {
        self.metrics_namespace.as_deref()
    }

    pub(crate) fn batch_max_chunks(&self) -> NonZeroUsize {
        self.batch_max_chunks
    }

    pub(crate) fn upload_concurrency(&self) -> NonZeroUsize {
        self.upload_concurrency
    }

    pub(crate) fn stall_limit(&self) -> Duration {
        self.stall_limit
    }

    pub(crate) fn quarantine(&self) -> Option<&QuarantineSettings> {
        self.quarantine.as_ref()
    }

    pub(crate) fn time_budget(&self) -> TimeBudget {
        self.time_budget
    }

    /// Every URL the function sends requests to: Memfault's, and the quarantine's if any.
    pub(crate) fn destinations(&self) -> Vec<String> {
        let quarantine = self.quarantine.iter().flat_map(|quarantine| {
            std::iter::once(quarantine.queue.to_string())
                .chain(quarantine.bucket.iter().map(ToString::to_string))
        });
        std::iter::once(self.chunks_url.to_string())
            .chain(quarantine)
            .collect()
    }
}

/// The `MEMFAULT_` variables [`Config::from_lookup`] reads: what it asks for when nothing is set
/// (every variable is read whatever the others hold).
fn names_read() -> Vec<&'static str> {
    declared().into_iter().map(|(name, _)| name).collect()
}

/// Every variable with its default, in the order they are read.
fn declared() -> Vec<(&'static str, &'static str)> {
    let env = Reader::new(|_: &str| None);
    Config::read(&env).expect("the defaults are a valid configuration");
    env.asked.into_inner()
}

/// The new name of a variable renamed before 0.1.0.
fn renamed(name: &str) -> Option<&'static str> {
    RENAMED
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(_, new)| *new)
}

/// The variable `name` most likely misspells: the nearest in edits (letters added, dropped or
/// changed, case ignored), if a few edits reach it.
fn closest_name(name: &str, known: &[&'static str]) -> Option<&'static str> {
    // Four: a dropped `_URL` or `_MS`, or two slips anywhere.
    const MOST_EDITS: usize = 4;
    let name = name.to_ascii_uppercase();
    known
        .iter()
        .map(|known| (strsim::levenshtein(&name, known), *known))
        .filter(|(edits, _)| *edits <= MOST_EDITS)
        .min()
        .map(|(_, known)| known)
}

/// Exactly one place decides a chunk's project key, or none and each message names its own:
/// a configuration where two could, or where the one that is set can never be used, is refused
/// rather than resolved by a precedence nobody would guess. Every such refusal is reported as
/// one of `MEMFAULT_PROJECT_KEYS`, the variable the layouts with several projects need.
fn router<F: Fn(&str) -> Option<String>>(env: &Reader<F>) -> Result<Router, ConfigError> {
    let key = env.get(&PROJECT_KEY)?;
    let keys = env.get(&PROJECT_KEYS)?;
    let pattern = env.get(&TOPIC_PATTERN)?;
    let refused = |problem: String| ConfigError {
        variable: PROJECT_KEYS.name.into(),
        shown: match (env.lookup)(PROJECT_KEYS.name) {
            Some(text) if !text.trim().is_empty() => (PROJECT_KEYS.show)(&text),
            _ => "(unset)".into(),
        },
        problem,
    };
    let source = match (key, keys) {
        (Some(_), Some(_)) => {
            return Err(refused(
                "is set together with MEMFAULT_PROJECT_KEY; set only one: MEMFAULT_PROJECT_KEY for one project, MEMFAULT_PROJECT_KEYS with a {project_slug} topic level for several".into(),
            ));
        }
        (Some(key), None) => KeySource::Fixed(key),
        (None, Some(keys)) => KeySource::BySlug(keys),
        (None, None) => KeySource::FromMessage,
    };
    Router::new(pattern, source).map_err(|mismatch| refused(mismatch.to_string()))
}

fn retry<F: Fn(&str) -> Option<String>>(env: &Reader<F>) -> Result<RetryPolicy, ConfigError> {
    let retry = RetryPolicy {
        max_attempts: env.get(&MAX_ATTEMPTS)?,
        base_delay: env.get(&RETRY_BASE_DELAY)?,
        max_delay: env.get(&RETRY_MAX_DELAY)?,
    };
    if retry.max_delay < retry.base_delay {
        return Err(ConfigError {
            variable: RETRY_MAX_DELAY.name.into(),
            shown: retry.max_delay.as_millis().to_string(),
            problem: format!(
                "must not be below {} ({})",
                RETRY_BASE_DELAY.name,
                retry.base_delay.as_millis()
            ),
        });
    }
    Ok(retry)
}

/// The quarantine queue, with the region and credentials its requests are signed with (Lambda
/// sets them in the environment of every function), and the stream failure bucket beside it.
fn quarantine<F: Fn(&str) -> Option<String>>(
    env: &Reader<F>,
) -> Result<Option<QuarantineSettings>, ConfigError> {
    let queue = env.get(&QUARANTINE_QUEUE_URL)?;
    let bucket = env.get(&STREAM_FAILURE_BUCKET_URL)?;
    let Some(queue) = queue else {
        return match bucket {
            None => Ok(None),
            Some(_) => Err(ConfigError {
                variable: STREAM_FAILURE_BUCKET_URL.name.into(),
                shown: "(set)".into(),
                problem: format!(
                    "needs {}: the bucket only takes records too large for the queue",
                    QUARANTINE_QUEUE_URL.name
                ),
            }),
        };
    };
    let needed_by = QUARANTINE_QUEUE_URL.name;
    let credentials = aws_credential_types::Credentials::new(
        env.required("AWS_ACCESS_KEY_ID", needed_by)?,
        env.required("AWS_SECRET_ACCESS_KEY", needed_by)?,
        (env.lookup)("AWS_SESSION_TOKEN").filter(|token| !token.is_empty()),
        None,
        "environment",
    );
    let region = env.required("AWS_REGION", needed_by)?;
    Ok(Some(QuarantineSettings {
        queue,
        bucket,
        identity: AwsIdentity {
            region,
            credentials,
        },
    }))
}

/// CloudWatch namespaces: 1 to 255 characters, letters, digits and `. - _ / # :` (and no leading colon).
fn check_namespace(text: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_/#: ".contains(c);
    if text.len() > 255 || text.starts_with(':') || !text.chars().all(allowed) {
        return Err(
            "must be 1-255 characters of letters, digits, spaces and . - _ / # : (not starting with ':')"
                .into(),
        );
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `Config::from_env` reads an environment of `vars`.
    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::check_names(vars.iter().map(|(name, _)| (*name).to_owned()))?;
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn defaults_point_at_memfault() {
        let config = config(&[]).unwrap();
        assert_eq!(config.chunks_url.to_string(), "https://chunks.memfault.com");
        assert!(config.chunks_url.to_string().starts_with("https://"));
        assert_eq!(config.router, Router::default());
        assert_eq!(config.router.key_source(), &KeySource::FromMessage);
        assert_eq!(config.retry.max_attempts, 4);
        assert_eq!(
            config.metrics_namespace.as_deref(),
            Some("MemfaultChunkProxy")
        );
    }

    #[test]
    fn every_variable_is_read() {
        let config = config(&[
            ("MEMFAULT_CHUNKS_URL", "http://127.0.0.1:8080/proxy/"),
            ("MEMFAULT_PROJECT_KEY", "abcdEFGH1234"),
            ("MEMFAULT_TOPIC_PATTERN", "fleet/{device_serial}/chunk"),
            ("MEMFAULT_MAX_ATTEMPTS", "7"),
            ("MEMFAULT_RETRY_BASE_DELAY_MS", "50"),
            ("MEMFAULT_RETRY_MAX_DELAY_MS", "900"),
            ("MEMFAULT_CONNECT_TIMEOUT_MS", "300"),
            ("MEMFAULT_REQUEST_TIMEOUT_MS", "4000"),
            ("MEMFAULT_DEADLINE_MARGIN_MS", "250"),
            ("MEMFAULT_METRICS_NAMESPACE", "Fleet/Chunks"),
            ("MEMFAULT_BATCH_MAX_CHUNKS", "100"),
            ("MEMFAULT_UPLOAD_CONCURRENCY", "3"),
            ("MEMFAULT_STALL_LIMIT_SECONDS", "45"),
        ])
        .unwrap();
        let serial: crate::routing::DeviceSerial = "D1".parse().unwrap();
        assert_eq!(
            config.chunks_url.for_device(&serial),
            "http://127.0.0.1:8080/proxy/api/v0/chunks/D1"
        );
        let KeySource::Fixed(key) = config.router.key_source() else {
            panic!("{:?}", config.router);
        };
        assert_eq!(key.expose(), "abcdEFGH1234");
        assert_eq!(
            config.router.pattern().to_string(),
            "fleet/{device_serial}/chunk"
        );
        assert_eq!(config.retry.max_attempts, 7);
        assert_eq!(config.retry.base_delay, Duration::from_millis(50));
        assert_eq!(config.retry.max_delay, Duration::from_millis(900));
        assert_eq!(config.connect_timeout, Duration::from_millis(300));
        assert_eq!(config.request_timeout, Duration::from_millis(4000));
        assert_eq!(config.time_budget.margin, Duration::from_millis(250));
        assert_eq!(config.metrics_namespace.as_deref(), Some("Fleet/Chunks"));
        assert_eq!(config.batch_max_chunks.get(), 100);
        assert_eq!(config.upload_concurrency.get(), 3);
        assert_eq!(config.stall_limit, Duration::from_secs(45));
    }

    /// The names checked are every `MEMFAULT_` variable `from_lookup` asks for, whatever the
    /// environment holds: a variable read only in some configurations would be refused in others.
    #[test]
    fn the_names_checked_are_the_names_read() {
        let asked = |vars: &[(&str, &str)]| {
            let read = std::cell::RefCell::new(Vec::new());
            Config::from_lookup(|name| {
                read.borrow_mut().push(name.to_owned());
                vars.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            })
            .unwrap();
            let mut read: Vec<String> = read.into_inner();
            read.retain(|name| name.starts_with(PREFIX));
            read.sort();
            read.dedup();
            read
        };
        let mut names: Vec<String> = names_read().into_iter().map(str::to_owned).collect();
        names.sort();
        assert_eq!(names.len(), 16);
        assert_eq!(asked(&[]), names);
        let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/quarantine.fifo";
        let with_queue = [
            ("MEMFAULT_QUARANTINE_QUEUE_URL", queue),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_REGION", "eu-west-1"),
        ];
        assert_eq!(asked(&with_queue), names);
    }

    /// README.md's table of variables is the declarations': every variable, each with its
    /// default ("unset" for an optional one), and no other.
    #[test]
    fn the_readme_lists_every_variable_with_its_default() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let mut rows: Vec<(String, String)> = readme
            .lines()
            .filter(|line| line.starts_with("| `MEMFAULT_"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
            })
            .collect();
        let mut expected: Vec<(String, String)> = declared()
            .into_iter()
            .map(|(name, default)| {
                let shown = match default {
                    "" => "unset".to_owned(),
                    text => format!("`{text}`"),
                };
                (name.to_owned(), shown)
            })
            .collect();
        rows.sort();
        expected.sort();
        assert_eq!(rows, expected);
    }

    #[test]
    fn every_default_passes_its_own_check_and_the_published_constants_agree() {
        let config = config(&[]).unwrap();
        assert_eq!(config.upload_concurrency.get(), DEFAULT_UPLOAD_CONCURRENCY);
        assert_eq!(config.time_budget.margin, Duration::from_millis(500));
        assert_eq!(config.time_budget.write_budget, Duration::ZERO);
        let retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        };
        assert_eq!(config.retry, retry);
        assert_eq!(config.stall_limit, Duration::from_secs(300));
        assert!(config.quarantine.is_none());
    }

    #[test]
    fn the_time_budget_leaves_the_margin_and_the_write_budget() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/quarantine.fifo";
        let config = Config::from_lookup(|name| {
            Some(match name {
                "MEMFAULT_QUARANTINE_QUEUE_URL" => queue.to_owned(),
                "MEMFAULT_DEADLINE_MARGIN_MS" => "200".to_owned(),
                name if name.starts_with("AWS_") => "x".to_owned(),
                _ => return None,
            })
        })
        .unwrap();
        let budget = config.time_budget();
        assert_eq!(
            deadline - budget.write_bound(deadline),
            Duration::from_millis(200)
        );
        assert_eq!(
            deadline - budget.upload_bound(deadline),
            Duration::from_millis(700)
        );
        assert_eq!(
            deadline - budget.probe_bound(deadline),
            Duration::from_millis(450)
        );
        let early = Instant::now();
        assert_eq!(
            budget.upload_bound(early),
            early.min(budget.upload_bound(early))
        );
    }

    #[test]
    fn a_renamed_variable_is_refused_with_its_new_name() {
        for (old, new) in [
            (
                "MEMFAULT_FAILURE_QUEUE_URL",
                "MEMFAULT_QUARANTINE_QUEUE_URL",
            ),
            (
                "MEMFAULT_FAILURE_BUCKET_URL",
                "MEMFAULT_STREAM_FAILURE_BUCKET_URL",
            ),
        ] {
            let url = "https://sqs.eu-west-1.amazonaws.com/123456789012/quarantine.fifo";
            // Set with its new name too: the old one would still be ignored.
            let error = config(&[(new, url), (old, url)]).unwrap_err();
            assert_eq!(error.variable, old);
            assert_eq!(
                error.to_string(),
                format!(
                    "invalid configuration: {old}=(set): was renamed {new} in 0.1.0 and is no longer read; set {new} instead (CHANGELOG.md)"
                )
            );
        }
    }

    #[test]
    fn an_unknown_memfault_variable_is_refused_without_its_value() {
        for (name, near) in [
            (
                "MEMFAULT_QUARANTINE_QUEUE",
                Some("MEMFAULT_QUARANTINE_QUEUE_URL"),
            ),
            ("MEMFAULT_PROJET_KEY", Some("MEMFAULT_PROJECT_KEY")),
            ("MEMFAULT_PROJECT_KEYSS", Some("MEMFAULT_PROJECT_KEYS")),
            ("memfault_chunks_url", Some("MEMFAULT_CHUNKS_URL")),
            ("MEMFAULT_ORG_TOKEN", None),
        ] {
            let error = config(&[(name, KEY_A)]).unwrap_err();
            assert_eq!(error.variable, name);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid configuration: {name}=(set): is not a setting of this function and would be ignored; "
                )),
                "{message}"
            );
            match near {
                Some(near) => assert!(
                    message.contains(&format!("did you mean {near}?")),
                    "{message}"
                ),
                None => assert!(!message.contains("did you mean"), "{message}"),
            }
            assert!(!message.contains(&KEY_A[..4]), "{message}");
        }
    }

    #[test]
    fn other_variables_and_several_unknown_ones_are_handled_alike_every_time() {
        config(&[
            ("AWS_REGION", "eu-west-1"),
            ("MEMFAULTX", "1"),
            ("RUST_LOG", "debug"),
        ])
        .unwrap();
        let names = [
            "MEMFAULT_ZZZ",
            "MEMFAULT_FAILURE_BUCKET_URL",
            "MEMFAULT_AAA",
        ];
        for order in [names, [names[2], names[0], names[1]]] {
            let error = Config::check_names(order.map(str::to_owned)).unwrap_err();
            assert_eq!(
                error.variable, "MEMFAULT_FAILURE_BUCKET_URL",
                "a rename first"
            );
        }
        let error = Config::check_names(["MEMFAULT_ZZZ", "MEMFAULT_AAA"].map(str::to_owned));
        assert_eq!(error.unwrap_err().variable, "MEMFAULT_AAA");
    }

    #[test]
    fn empty_optional_values_mean_unset() {
        let config = config(&[
            ("MEMFAULT_PROJECT_KEY", ""),
            ("MEMFAULT_METRICS_NAMESPACE", ""),
        ])
        .unwrap();
        assert_eq!(config.router.key_source(), &KeySource::FromMessage);
        assert_eq!(config.metrics_namespace, None);
    }

    #[test]
    fn a_stream_failure_bucket_needs_a_quarantine_queue() {
        let error = config(&[(
            "MEMFAULT_STREAM_FAILURE_BUCKET_URL",
            "https://failures.s3.eu-west-1.amazonaws.com",
        )])
        .unwrap_err();
        assert_eq!(error.variable, "MEMFAULT_STREAM_FAILURE_BUCKET_URL");
        assert!(
            error.to_string().contains("MEMFAULT_QUARANTINE_QUEUE_URL"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_the_problem() {
        for (variable, value, problem) in [
            (
                "MEMFAULT_CHUNKS_URL",
                "ftp://x",
                "scheme \"ftp\" is not http or https",
            ),
            (
                "MEMFAULT_CHUNKS_URL",
                "chunks.memfault.com",
                "needs a scheme",
            ),
            (
                "MEMFAULT_CHUNKS_URL",
                "https://u:p@host",
                "must not carry credentials",
            ),
            (
                "MEMFAULT_CHUNKS_URL",
                "https://host/?a=b",
                "must not have a query",
            ),
            (
                "MEMFAULT_TOPIC_PATTERN",
                "prod/+/chunk",
                "has no {device_serial} level",
            ),
            ("MEMFAULT_MAX_ATTEMPTS", "0", "must be between 1 and 20"),
            (
                "MEMFAULT_DEADLINE_MARGIN_MS",
                "0",
                "must be between 100 and 60000",
            ),
            (
                "MEMFAULT_DEADLINE_MARGIN_MS",
                "99",
                "must be between 100 and 60000",
            ),
            ("MEMFAULT_MAX_ATTEMPTS", "three", "is not a whole number"),
            ("MEMFAULT_REQUEST_TIMEOUT_MS", "-5", "is not a whole number"),
            (
                "MEMFAULT_UPLOAD_CONCURRENCY",
                "0",
                "must be between 1 and 256",
            ),
            (
                "MEMFAULT_METRICS_NAMESPACE",
                ":bad",
                "must be 1-255 characters",
            ),
        ] {
            let error = config(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid configuration: {variable}=")),
                "{message}"
            );
            assert!(message.contains(problem), "{variable}={value}: {message}");
        }
    }

    #[test]
    fn whole_numbers_are_bounded_and_fit_their_type() {
        assert_eq!(whole::<u32, 1, 20>(" 7\n"), Ok(7));
        assert_eq!(whole::<u32, 1, 20>("20"), Ok(20));
        for text in ["0", "21"] {
            assert_eq!(
                whole::<u32, 1, 20>(text),
                Err("must be between 1 and 20".into())
            );
        }
        for text in ["", "1.5", "+-3", "99999999999999999999"] {
            assert_eq!(
                whole::<u32, 1, 20>(text),
                Err("is not a whole number".into()),
                "{text}"
            );
        }
        // Within the range but not within the type: refused, never truncated.
        assert_eq!(
            whole::<u8, 0, 1_000>("256"),
            Err("must be between 0 and 1000".into())
        );
        assert_eq!(millis::<1, 10>("10"), Ok(Duration::from_millis(10)));
    }

    #[test]
    fn empty_means_unset_only_where_declared() {
        assert_eq!(empty_is_unset::<u8>(""), Ok(None));
        assert_eq!(empty_is_unset::<u8>("7"), Ok(Some(7)));
        assert!(empty_is_unset::<u8>(" ").is_err());
        assert_eq!(from_str::<u8>("7"), Ok(7));
        assert!(from_str::<u8>("").is_err());
    }

    /// The reader quotes a refused value only as its declaration shows it: a plain variable as
    /// it is, a secret one redacted; and an unset variable is no error.
    #[test]
    fn a_variable_is_read_and_refused_as_declared() {
        const SECRET: Variable<Option<u8>> = Variable {
            name: "SECRET_NUMBER",
            parse: empty_is_unset,
            show: redact,
            default: "",
        };
        const PLAIN: Variable<u8> = plain("PLAIN_NUMBER", from_str, "3");
        let env = Reader::new(|name: &str| Some(format!("{name}-is-no-number")));
        for (message, name, shown) in [
            (env.get(&SECRET).unwrap_err(), SECRET.name, "SECR…"),
            (
                env.get(&PLAIN).unwrap_err(),
                PLAIN.name,
                "\"PLAIN_NUMBER-is-no-number\"",
            ),
        ] {
            let message = message.to_string();
            assert!(
                message.starts_with(&format!("invalid configuration: {name}={shown}: ")),
                "{message}"
            );
        }
        let unset = Reader::new(|_: &str| None);
        assert_eq!(unset.get(&SECRET).unwrap(), None);
        assert_eq!(unset.get(&PLAIN).unwrap(), 3);
    }

    #[test]
    fn the_smallest_deadline_margin_is_accepted() {
        let config = config(&[("MEMFAULT_DEADLINE_MARGIN_MS", "100")]).unwrap();
        assert_eq!(config.time_budget.margin, MIN_DEADLINE_MARGIN);
    }

    #[test]
    fn retry_ceiling_below_base_is_refused() {
        let error = config(&[
            ("MEMFAULT_RETRY_BASE_DELAY_MS", "500"),
            ("MEMFAULT_RETRY_MAX_DELAY_MS", "100"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "MEMFAULT_RETRY_MAX_DELAY_MS");
    }

    #[test]
    fn a_bad_chunks_url_is_shown_without_credentials_query_or_fragment() {
        for (value, shown) in [
            (
                "https://proxyuser:Pr0xyPassw0rd@proxy.example/memfault?token=T0kenT0ken#Fr4gment",
                "\"https://…@proxy.example/memfault?…#…\"",
            ),
            // Not even a URL: a space in the password.
            (
                "https://proxyuser:Pr0xy Passw0rd@proxy.example",
                "\"https://…@proxy.example\"",
            ),
            (
                "proxyuser:Pr0xyPassw0rd@proxy.example/x",
                "\"…@proxy.example/x\"",
            ),
            ("https://host/p?token=T0kenT0ken", "\"https://host/p?…\""),
        ] {
            let message = config(&[("MEMFAULT_CHUNKS_URL", value)])
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid configuration: MEMFAULT_CHUNKS_URL={shown}: "
                )),
                "{message}"
            );
            for secret in ["proxyuser", "Passw0rd", "T0ken", "Fr4gment"] {
                assert!(!message.contains(secret), "{message}");
            }
        }
    }

    #[test]
    fn a_key_written_into_a_bad_topic_pattern_is_shortened() {
        const KEY: &str = "0123456789abcdef0123456789abcdef";
        for pattern in [
            format!("prod/+/memfault/{KEY}/chunk"),
            format!("prod/{{{KEY}}}/{{device_serial}}"),
            format!("prod/{KEY}+/{{device_serial}}"),
        ] {
            let message = config(&[("MEMFAULT_TOPIC_PATTERN", &pattern)])
                .unwrap_err()
                .to_string();
            assert!(message.contains("0123…"), "{message}");
            assert!(!message.contains("0123456789"), "{message}");
        }
    }

    #[test]
    fn a_bad_project_key_is_reported_without_the_key() {
        let error = config(&[("MEMFAULT_PROJECT_KEY", "secretkey with space")]).unwrap_err();
        let message = error.to_string();
        assert_eq!(error.variable, "MEMFAULT_PROJECT_KEY");
        assert!(
            message.contains("secr…") && !message.contains("secretkey"),
            "{message}"
        );
        assert!(message.contains("contains ' '"), "{message}");
    }

    const GUIDE: &str = "memfault/{project_slug}/{device_serial}/chunks";
    const KEY_A: &str = "aaaaBBBBccccDDDDeeeeFFFF00001111";
    const KEY_B: &str = "bbbbCCCCddddEEEEffffGGGG22223333";

    #[test]
    fn the_guide_layout_takes_its_keys_from_the_map() {
        let map = format!("project-a={KEY_A},project-b={KEY_B}");
        let guide = config(&[
            ("MEMFAULT_TOPIC_PATTERN", GUIDE),
            ("MEMFAULT_PROJECT_KEYS", &map),
            // Templates pass an unset parameter through as an empty string.
            ("MEMFAULT_PROJECT_KEY", ""),
        ])
        .unwrap();
        let KeySource::BySlug(keys) = guide.router.key_source() else {
            panic!("{:?}", guide.router);
        };
        assert_eq!(keys.get("project-b").unwrap().expose(), KEY_B);
        let blank = config(&[("MEMFAULT_PROJECT_KEYS", " ")]).unwrap();
        assert_eq!(blank.router.key_source(), &KeySource::FromMessage);
    }

    #[test]
    fn one_source_of_keys_or_none_is_allowed() {
        let map = format!("project-a={KEY_A}");
        for (vars, problem) in [
            (
                vec![
                    ("MEMFAULT_TOPIC_PATTERN", GUIDE),
                    ("MEMFAULT_PROJECT_KEYS", map.as_str()),
                    ("MEMFAULT_PROJECT_KEY", KEY_B),
                ],
                "is set together with MEMFAULT_PROJECT_KEY",
            ),
            (
                vec![
                    ("MEMFAULT_PROJECT_KEYS", map.as_str()),
                    ("MEMFAULT_PROJECT_KEY", KEY_B),
                ],
                "is set together with MEMFAULT_PROJECT_KEY",
            ),
            (
                vec![
                    ("MEMFAULT_TOPIC_PATTERN", GUIDE),
                    ("MEMFAULT_PROJECT_KEY", KEY_B),
                ],
                "MEMFAULT_PROJECT_KEY cannot tell which project a slug names",
            ),
            (
                vec![("MEMFAULT_TOPIC_PATTERN", GUIDE)],
                "is needed because MEMFAULT_TOPIC_PATTERN has a {project_slug} level",
            ),
            (
                vec![("MEMFAULT_PROJECT_KEYS", map.as_str())],
                "MEMFAULT_TOPIC_PATTERN has no {project_slug} level",
            ),
        ] {
            let error = config(&vars).unwrap_err();
            assert_eq!(error.variable, "MEMFAULT_PROJECT_KEYS");
            let message = error.to_string();
            assert!(message.contains(problem), "{vars:?}: {message}");
            assert!(
                !message.contains(KEY_A) && !message.contains(KEY_B),
                "{message}"
            );
        }
        let unset = config(&[("MEMFAULT_TOPIC_PATTERN", GUIDE)]).unwrap_err();
        assert!(
            unset
                .to_string()
                .starts_with("invalid configuration: MEMFAULT_PROJECT_KEYS=(unset): "),
            "{unset}"
        );
    }

    #[test]
    fn a_bad_key_map_names_the_variable_and_hides_its_keys() {
        let text = format!("project-a={KEY_A},project-a={KEY_B}");
        let error = config(&[
            ("MEMFAULT_TOPIC_PATTERN", GUIDE),
            ("MEMFAULT_PROJECT_KEYS", &text),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "MEMFAULT_PROJECT_KEYS");
        assert_eq!(
            error.to_string(),
            "invalid configuration: MEMFAULT_PROJECT_KEYS=\"project-a=aaaa…,project-a=bbbb…\": entries 1 and 2 both give the slug project-a a key; give each project once"
        );
    }
}
