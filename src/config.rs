//! Configuration from environment variables, validated once at init.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::aws::{BucketUrl, QuarantineQueueConfig};
use crate::redact::{redact, redact_key_like, redact_project_keys, redact_url};
use crate::retry::RetryPolicy;
use crate::routing::{ProjectKey, ProjectKeys, TopicPattern};
pub use crate::url::ChunksUrl;

pub(crate) const DEFAULT_CHUNKS_URL: &str = "https://chunks.memfault.com";
pub(crate) const DEFAULT_METRICS_NAMESPACE: &str = "MemfaultChunkProxy";
/// The least time uploads leave between giving up and the invocation deadline
/// (`MEMFAULT_DEADLINE_MARGIN_MS`), so that the function can still log, count and answer.
/// Measured on a development machine (debug build): 0.4 ms from giving up to the answer for a
/// direct event, 22 ms for an SQS batch of 1,000 devices with no time left. Lambda at 128 MB has
/// 128/1,769 of a vCPU (Lambda developer guide, "Configure Lambda function memory"), about 14
/// times less than that machine's core: 100 ms covers a direct event many times over and such a
/// batch with room to spare. Larger batches want the default 500 ms or more.
/// Devices uploaded at once: a batch of 500 devices at a 50 ms round trip takes
/// ceil(500 / 64) = 8 round trips, 0.4 s, so one invocation keeps up with a shard's 1,000
/// records/s (docs/benchmark.md).
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 64;
pub const MIN_DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// A configuration variable with a value that cannot work. The message names the variable and
/// the problem, and quotes the value with anything that may be a secret in it redacted.
#[derive(Debug, Error)]
#[error("invalid configuration: {variable}={shown}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    shown: String,
    problem: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub chunks_url: ChunksUrl,
    /// `MEMFAULT_PROJECT_KEY`: the one project every chunk goes to.
    pub project_key: Option<ProjectKey>,
    /// `MEMFAULT_PROJECT_KEYS`: the projects a `{project_slug}` topic level may name. Never set
    /// together with `project_key`.
    pub project_keys: Option<ProjectKeys>,
    pub topic_pattern: TopicPattern,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Uploads stop this long before the invocation deadline, so the function always answers.
    pub deadline_margin: Duration,
    /// `None` turns CloudWatch embedded metrics off.
    pub metrics_namespace: Option<String>,
    pub batch_max_chunks: usize,
    pub upload_concurrency: usize,
    /// How long a stream device's failing record may hold its shard while other devices are
    /// delivered, before its records are set aside.
    pub stall_limit: Duration,
    /// Where records that can never be delivered are written; `None` leaves them with their
    /// source, reported as failures.
    pub quarantine_queue: Option<QuarantineQueueConfig>,
    /// Where a failure record too large for the queue is put instead (stream mode).
    pub stream_failure_bucket: Option<BucketUrl>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chunks_url: DEFAULT_CHUNKS_URL
                .parse()
                .expect("the default URL is valid"),
            project_key: None,
            project_keys: None,
            topic_pattern: TopicPattern::default(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            deadline_margin: Duration::from_millis(500),
            metrics_namespace: Some(DEFAULT_METRICS_NAMESPACE.to_owned()),
            batch_max_chunks: 500,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            stall_limit: Duration::from_secs(300),
            quarantine_queue: None,
            stream_failure_bucket: None,
        }
    }
}

/// Reads one variable through `lookup`, so that tests need not touch the process environment.
struct Reader<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    fn parsed<T, E: fmt::Display>(
        &self,
        variable: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        self.parsed_showing(variable, |text| format!("{text:?}"), parse)
    }

    /// Like `parsed`, for a value that may hold a secret: an error shows it through `show`.
    fn parsed_showing<T, E: fmt::Display>(
        &self,
        variable: &'static str,
        show: impl FnOnce(&str) -> String,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(text) = (self.lookup)(variable) else {
            return Ok(None);
        };
        parse(&text).map(Some).map_err(|problem| ConfigError {
            variable,
            shown: show(&text),
            problem: problem.to_string(),
        })
    }

    /// A value that templates may pass through empty when it is not given: empty means unset.
    fn optional<T: FromStr<Err = String>>(
        &self,
        variable: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        let parsed = self.parsed(variable, |text| match text {
            "" => Ok(None),
            text => text.parse().map(Some),
        })?;
        Ok(parsed.flatten())
    }

    fn number(
        &self,
        variable: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        self.parsed(variable, |text| {
            let number: u64 = text
                .trim()
                .parse()
                .map_err(|_| "is not a whole number".to_owned())?;
            if range.contains(&number) {
                Ok(number)
            } else {
                Err(format!(
                    "must be between {} and {}",
                    range.start(),
                    range.end()
                ))
            }
        })
    }

    fn millis(
        &self,
        variable: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<Duration>, ConfigError> {
        Ok(self.number(variable, range)?.map(Duration::from_millis))
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Reader { lookup };
        let defaults = Self::default();

        let project_key = match (env.lookup)("MEMFAULT_PROJECT_KEY") {
            // Templates pass an unset parameter through as an empty string.
            None => None,
            Some(text) if text.is_empty() => None,
            Some(text) => Some(text.parse::<ProjectKey>().map_err(|problem| ConfigError {
                variable: "MEMFAULT_PROJECT_KEY",
                shown: redact(&text),
                problem: problem.to_string(),
            })?),
        };

        let project_keys = env
            .parsed_showing(
                "MEMFAULT_PROJECT_KEYS",
                |text| format!("{:?}", redact_project_keys(text)),
                |text| match text.trim() {
                    "" => Ok(None),
                    map => map.parse::<ProjectKeys>().map(Some),
                },
            )?
            .flatten();
        let topic_pattern = env
            .parsed_showing(
                "MEMFAULT_TOPIC_PATTERN",
                |text| format!("{:?}", redact_key_like(text)),
                str::parse,
            )?
            .unwrap_or(defaults.topic_pattern);
        check_key_sources(
            &topic_pattern,
            project_key.is_some(),
            project_keys.is_some(),
        )
        .map_err(|problem| ConfigError {
            variable: "MEMFAULT_PROJECT_KEYS",
            shown: match (env.lookup)("MEMFAULT_PROJECT_KEYS") {
                Some(text) if !text.trim().is_empty() => {
                    format!("{:?}", redact_project_keys(&text))
                }
                _ => "(unset)".into(),
            },
            problem: problem.into(),
        })?;

        let retry = RetryPolicy {
            max_attempts: env
                .number("MEMFAULT_MAX_ATTEMPTS", 1..=20)?
                .map_or(defaults.retry.max_attempts, |n| n as u32),
            base_delay: env
                .millis("MEMFAULT_RETRY_BASE_DELAY_MS", 1..=60_000)?
                .unwrap_or(defaults.retry.base_delay),
            max_delay: env
                .millis("MEMFAULT_RETRY_MAX_DELAY_MS", 1..=300_000)?
                .unwrap_or(defaults.retry.max_delay),
        };
        if retry.max_delay < retry.base_delay {
            return Err(ConfigError {
                variable: "MEMFAULT_RETRY_MAX_DELAY_MS",
                shown: retry.max_delay.as_millis().to_string(),
                problem: format!(
                    "must not be below MEMFAULT_RETRY_BASE_DELAY_MS ({})",
                    retry.base_delay.as_millis()
                ),
            });
        }

        let quarantine_queue = env
            .optional("MEMFAULT_QUARANTINE_QUEUE_URL")?
            .map(|url| quarantine_queue_identity(&env, url))
            .transpose()?;
        let stream_failure_bucket: Option<BucketUrl> =
            env.optional("MEMFAULT_STREAM_FAILURE_BUCKET_URL")?;
        if stream_failure_bucket.is_some() && quarantine_queue.is_none() {
            return Err(ConfigError {
                variable: "MEMFAULT_STREAM_FAILURE_BUCKET_URL",
                shown: "(set)".into(),
                problem: "needs MEMFAULT_QUARANTINE_QUEUE_URL: the bucket only takes records too large for the queue".into(),
            });
        }

        // Unset keeps the default namespace; set but empty turns metrics off.
        let metrics_namespace = env
            .parsed("MEMFAULT_METRICS_NAMESPACE", |text| match text {
                "" => Ok(None),
                name => check_namespace(name).map(Some),
            })?
            .unwrap_or(defaults.metrics_namespace);

        Ok(Self {
            chunks_url: env
                .parsed_showing(
                    "MEMFAULT_CHUNKS_URL",
                    |text| format!("{:?}", redact_url(text)),
                    str::parse,
                )?
                .unwrap_or(defaults.chunks_url),
            project_key,
            project_keys,
            topic_pattern,
            retry,
            connect_timeout: env
                .millis("MEMFAULT_CONNECT_TIMEOUT_MS", 1..=60_000)?
                .unwrap_or(defaults.connect_timeout),
            request_timeout: env
                .millis("MEMFAULT_REQUEST_TIMEOUT_MS", 1..=900_000)?
                .unwrap_or(defaults.request_timeout),
            deadline_margin: env
                .millis(
                    "MEMFAULT_DEADLINE_MARGIN_MS",
                    MIN_DEADLINE_MARGIN.as_millis() as u64..=60_000,
                )?
                .unwrap_or(defaults.deadline_margin),
            metrics_namespace,
            batch_max_chunks: env
                .number("MEMFAULT_BATCH_MAX_CHUNKS", 1..=10_000)?
                .map_or(defaults.batch_max_chunks, |n| n as usize),
            upload_concurrency: env
                .number("MEMFAULT_UPLOAD_CONCURRENCY", 1..=256)?
                .map_or(defaults.upload_concurrency, |n| n as usize),
            stall_limit: env
                .number("MEMFAULT_STALL_LIMIT_SECONDS", 1..=604_800)?
                .map_or(defaults.stall_limit, Duration::from_secs),
            quarantine_queue,
            stream_failure_bucket,
        })
    }
}

/// Exactly one place decides a chunk's project key, or none and each message names its own:
/// a configuration where two could, or where the one that is set can never be used, is refused
/// rather than resolved by a precedence nobody would guess.
fn check_key_sources(
    pattern: &TopicPattern,
    single_key: bool,
    key_map: bool,
) -> Result<(), &'static str> {
    Err(match (pattern.names_project_slug(), single_key, key_map) {
        (_, true, true) => {
            "is set together with MEMFAULT_PROJECT_KEY; set only one: MEMFAULT_PROJECT_KEY for one project, MEMFAULT_PROJECT_KEYS with a {project_slug} topic level for several"
        }
        (true, true, false) => {
            "is needed because MEMFAULT_TOPIC_PATTERN has a {project_slug} level; MEMFAULT_PROJECT_KEY cannot tell which project a slug names: give it as MEMFAULT_PROJECT_KEYS=<slug>=<key> instead"
        }
        (true, false, false) => {
            "is needed because MEMFAULT_TOPIC_PATTERN has a {project_slug} level: give each project's key as <slug>=<key>,<slug>=<key>"
        }
        (false, _, true) => {
            "is set but MEMFAULT_TOPIC_PATTERN has no {project_slug} level, so no chunk could use it"
        }
        (true, false, true) | (false, _, false) => return Ok(()),
    })
}

/// The region and credentials the quarantine queue's requests are signed with: Lambda sets them in
/// the environment of every function.
fn quarantine_queue_identity<F: Fn(&str) -> Option<String>>(
    env: &Reader<F>,
    url: crate::aws::QueueUrl,
) -> Result<QuarantineQueueConfig, ConfigError> {
    let required = |variable: &'static str| {
        (env.lookup)(variable)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ConfigError {
                variable,
                shown: "(unset)".into(),
                problem:
                    "is needed to sign requests to MEMFAULT_QUARANTINE_QUEUE_URL (Lambda sets it)"
                        .into(),
            })
    };
    let credentials = aws_credential_types::Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        (env.lookup)("AWS_SESSION_TOKEN").filter(|token| !token.is_empty()),
        None,
        "environment",
    );
    Ok(QuarantineQueueConfig {
        url,
        region: required("AWS_REGION")?,
        credentials,
    })
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

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
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
        assert_eq!(config.project_key, None);
        assert_eq!(config.topic_pattern, TopicPattern::default());
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
        assert_eq!(config.project_key.unwrap().expose(), "abcdEFGH1234");
        assert_eq!(
            config.topic_pattern.to_string(),
            "fleet/{device_serial}/chunk"
        );
        assert_eq!(config.retry.max_attempts, 7);
        assert_eq!(config.retry.base_delay, Duration::from_millis(50));
        assert_eq!(config.retry.max_delay, Duration::from_millis(900));
        assert_eq!(config.connect_timeout, Duration::from_millis(300));
        assert_eq!(config.request_timeout, Duration::from_millis(4000));
        assert_eq!(config.deadline_margin, Duration::from_millis(250));
        assert_eq!(config.metrics_namespace.as_deref(), Some("Fleet/Chunks"));
        assert_eq!(config.batch_max_chunks, 100);
        assert_eq!(config.upload_concurrency, 3);
        assert_eq!(config.stall_limit, Duration::from_secs(45));
    }

    #[test]
    fn empty_optional_values_mean_unset() {
        let config = config(&[
            ("MEMFAULT_PROJECT_KEY", ""),
            ("MEMFAULT_METRICS_NAMESPACE", ""),
        ])
        .unwrap();
        assert_eq!(config.project_key, None);
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
    fn the_smallest_deadline_margin_is_accepted() {
        let config = config(&[("MEMFAULT_DEADLINE_MARGIN_MS", "100")]).unwrap();
        assert_eq!(config.deadline_margin, MIN_DEADLINE_MARGIN);
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
        assert_eq!(guide.project_key, None);
        let keys = guide.project_keys.unwrap();
        assert_eq!(keys.get("project-b").unwrap().expose(), KEY_B);
        let blank = config(&[("MEMFAULT_PROJECT_KEYS", " ")]).unwrap();
        assert_eq!(blank.project_keys, None);
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
