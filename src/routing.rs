//! Topic routing: which device and which Memfault project a chunk belongs to.
//!
//! Everything here is pure. The values it produces end up in a URL path (the device serial) and
//! an HTTP header (the project key), so they are validated to a strict alphabet instead of being
//! escaped: anything Memfault would not accept anyway is refused before any request is made.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The layout of the topic used by Memfault's MQTT guide: `prod/<board>/<device>/memfault/<key>/chunk`.
pub const DEFAULT_TOPIC_PATTERN: &str = "prod/+/{device_serial}/memfault/{project_key}/chunk";

const MAX_IDENTIFIER_LEN: usize = 128;

/// Memfault documents device serials as 1 to 128 characters of `[A-Za-z0-9_-]`; the same
/// alphabet covers every project key Memfault issues and cannot alter a path or a header.
fn check_identifier(value: &str) -> Result<(), IdentifierProblem> {
    if value.is_empty() {
        return Err(IdentifierProblem::Empty);
    }
    if value.len() > MAX_IDENTIFIER_LEN {
        return Err(IdentifierProblem::TooLong(value.len()));
    }
    match value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(bad) => Err(IdentifierProblem::BadCharacter(bad)),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdentifierProblem {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long; at most {MAX_IDENTIFIER_LEN} are allowed")]
    TooLong(usize),
    #[error("contains {0:?}; only A-Z, a-z, 0-9, '-' and '_' are allowed")]
    BadCharacter(char),
}

/// A device serial that is safe to place in the request path as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceSerial(String);

impl DeviceSerial {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DeviceSerial {
    type Err = IdentifierProblem;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        check_identifier(value).map(|()| Self(value.to_owned()))
    }
}

impl fmt::Display for DeviceSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Memfault project key. Its `Debug` and `Display` show only a prefix, so that a key can never
/// reach a log line, an error message or a failure record in full by accident.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey(String);

impl ProjectKey {
    /// The key itself, for the request header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first four characters followed by an ellipsis.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// `text` with every occurrence of this key, in any letter case, replaced by its redacted
    /// form. For text the key did not come from and cannot vouch for, such as an upstream's
    /// answer to a request that carried the key.
    pub fn scrub<'t>(&self, text: &'t str) -> Cow<'t, str> {
        // A plain scan: the key is short and this runs only on error answers, and a search
        // library's automaton would add a quarter of a megabyte to a binary kept small for
        // cold starts. Keys are ASCII, so a match always starts and ends on a char boundary.
        let key = self.0.as_bytes();
        let bytes = text.as_bytes();
        let mut scrubbed = String::new();
        let (mut copied, mut at) = (0, 0);
        while at + key.len() <= bytes.len() {
            if bytes[at..at + key.len()].eq_ignore_ascii_case(key) {
                scrubbed.push_str(&text[copied..at]);
                scrubbed.push_str(&self.redacted());
                at += key.len();
                copied = at;
            } else {
                at += 1;
            }
        }
        if copied == 0 {
            return Cow::Borrowed(text);
        }
        scrubbed.push_str(&text[copied..]);
        Cow::Owned(scrubbed)
    }
}

/// Shows enough of a secret to tell two apart, never enough to use one: the first four
/// characters, and never more than half of a short secret.
pub fn redact(secret: &str) -> String {
    let shown = (secret.chars().count() / 2).min(4);
    let prefix: String = secret.chars().take(shown).collect();
    format!("{prefix}…")
}

/// Memfault does not publish the length of its project keys. Keys are random strings longer than
/// this (an assumption, true of every key we have seen); a literal word this long made only of
/// key characters is rare in a topic and merely shown shortened too.
const KEY_LIKE_LEN: usize = 16;

/// `text` with every run of `KEY_LIKE_LEN` or more key characters (`[A-Za-z0-9_-]`) redacted,
/// for configuration values such as a topic pattern that may have a key written into it.
pub fn redact_key_like(text: &str) -> Cow<'_, str> {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut shown = String::new();
    let mut copied = 0;
    let mut run_start = None;
    // A sentinel that is not a key character ends a run at the end of the text.
    for (at, c) in text.char_indices().chain([(text.len(), '/')]) {
        match (is_key_char(c), run_start) {
            (true, None) => run_start = Some(at),
            (false, Some(start)) => {
                run_start = None;
                if at - start >= KEY_LIKE_LEN {
                    shown.push_str(&text[copied..start]);
                    shown.push_str(&redact(&text[start..at]));
                    copied = at;
                }
            }
            _ => {}
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    shown.push_str(&text[copied..]);
    Cow::Owned(shown)
}

impl FromStr for ProjectKey {
    type Err = IdentifierProblem;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        check_identifier(value).map(|()| Self(value.to_owned()))
    }
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectKey({})", self.redacted())
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    AnyOne,
    DeviceSerial,
    ProjectKey,
    AnyRest,
}

/// An MQTT-style topic layout with named captures, e.g.
/// `prod/+/{device_serial}/memfault/{project_key}/chunk`.
///
/// Levels are separated by `/`. A level is a literal that must match exactly, `+` for any one
/// level, `{device_serial}` (required, once) or `{project_key}` (optional, once) to capture that
/// level, or `#` as the last level for any number of remaining levels.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicPattern {
    levels: Vec<Level>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    #[error("has no {{device_serial}} level; the device serial must come from the topic")]
    NoDeviceSerial,
    #[error("names {{{0}}} more than once")]
    RepeatedCapture(&'static str),
    #[error("has '#' at level {0}; '#' may only be the last level")]
    HashNotLast(usize),
    #[error(
        "level {0} ({shown:?}) mixes wildcards or braces with text; '+', '#' and captures must fill a whole level",
        shown = redact_key_like(.1)
    )]
    PartialWildcard(usize, String),
    #[error(
        "level {0} names an unknown capture {shown:?}; use {{device_serial}} or {{project_key}}",
        shown = redact_key_like(.1)
    )]
    UnknownCapture(usize, String),
}

impl FromStr for TopicPattern {
    type Err = PatternError;

    fn from_str(source: &str) -> Result<Self, Self::Err> {
        let raw: Vec<&str> = source.split('/').collect();
        let mut levels = Vec::with_capacity(raw.len());
        for (index, text) in raw.iter().enumerate() {
            let number = index + 1;
            let level = match *text {
                "+" => Level::AnyOne,
                "#" if number == raw.len() => Level::AnyRest,
                "#" => return Err(PatternError::HashNotLast(number)),
                "{device_serial}" => Level::DeviceSerial,
                "{project_key}" => Level::ProjectKey,
                capture if capture.starts_with('{') && capture.ends_with('}') => {
                    return Err(PatternError::UnknownCapture(number, capture.to_owned()));
                }
                literal if literal.contains(['+', '#', '{', '}']) => {
                    return Err(PatternError::PartialWildcard(number, literal.to_owned()));
                }
                literal => Level::Literal(literal.to_owned()),
            };
            levels.push(level);
        }
        for (capture, name) in [
            (Level::DeviceSerial, "device_serial"),
            (Level::ProjectKey, "project_key"),
        ] {
            if levels.iter().filter(|level| **level == capture).count() > 1 {
                return Err(PatternError::RepeatedCapture(name));
            }
        }
        if !levels.contains(&Level::DeviceSerial) {
            return Err(PatternError::NoDeviceSerial);
        }
        Ok(Self {
            levels,
            source: source.to_owned(),
        })
    }
}

/// Shows the pattern as configured, except that a project key written into it as a literal
/// level is shortened like any other key.
impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_key_like(&self.source))
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicPattern({self})")
    }
}

impl Default for TopicPattern {
    fn default() -> Self {
        DEFAULT_TOPIC_PATTERN
            .parse()
            .expect("the default topic pattern is valid")
    }
}

/// The levels a topic filled the pattern's captures with, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicCaptures<'t> {
    pub device_serial: &'t str,
    pub project_key: Option<&'t str>,
}

/// Why a topic does not fit. Messages never quote the topic's levels: one of them may be a key.
/// They quote the pattern's, shortened where a key may have been written into it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicMismatch {
    #[error("topic has {actual} levels but the pattern needs {expected}")]
    LevelCount { expected: String, actual: usize },
    #[error("topic level {level} should be {:?}", redact_key_like(.expected))]
    Literal { level: usize, expected: String },
}

impl TopicPattern {
    pub fn captures<'t>(&self, topic: &'t str) -> Result<TopicCaptures<'t>, TopicMismatch> {
        let topic_levels: Vec<&str> = topic.split('/').collect();
        let open_ended = self.levels.last() == Some(&Level::AnyRest);
        let fixed = self.levels.len() - usize::from(open_ended);
        let fits = if open_ended {
            topic_levels.len() >= fixed
        } else {
            topic_levels.len() == fixed
        };
        if !fits {
            return Err(TopicMismatch::LevelCount {
                expected: if open_ended {
                    format!("at least {fixed}")
                } else {
                    fixed.to_string()
                },
                actual: topic_levels.len(),
            });
        }
        let mut device_serial = "";
        let mut project_key = None;
        for (index, (level, text)) in self.levels.iter().zip(&topic_levels).enumerate() {
            match level {
                Level::Literal(expected) if expected != text => {
                    return Err(TopicMismatch::Literal {
                        level: index + 1,
                        expected: expected.clone(),
                    });
                }
                Level::DeviceSerial => device_serial = text,
                Level::ProjectKey => project_key = Some(*text),
                Level::Literal(_) | Level::AnyOne | Level::AnyRest => {}
            }
        }
        Ok(TopicCaptures {
            device_serial,
            project_key,
        })
    }
}

/// Where one chunk goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub project_key: ProjectKey,
    pub device_serial: DeviceSerial,
}

/// The identity claims of one message: its topic, and the fields a rule may add explicitly.
#[derive(Debug, Clone, Copy)]
pub struct Claims<'a> {
    pub topic: &'a str,
    pub device_serial: Option<&'a str>,
    pub project_key: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    #[error("topic does not fit MEMFAULT_TOPIC_PATTERN '{pattern}': {mismatch}")]
    TopicMismatch {
        pattern: String,
        mismatch: TopicMismatch,
    },
    #[error("device serial from {source_name} {problem} (value {shown})")]
    BadDeviceSerial {
        source_name: &'static str,
        problem: IdentifierProblem,
        shown: String,
    },
    #[error("project key from {source_name} {problem}")]
    BadProjectKey {
        source_name: &'static str,
        problem: IdentifierProblem,
    },
    #[error(
        "project key from {source_name} ({claimed}) differs from MEMFAULT_PROJECT_KEY ({configured}); a device may not choose the project its data goes to"
    )]
    ProjectKeyMismatch {
        source_name: &'static str,
        claimed: String,
        configured: String,
    },
    #[error(
        "no project key: MEMFAULT_PROJECT_KEY is not set, the topic pattern has no {{project_key}} level and the event has no project_key field"
    )]
    NoProjectKey,
}

impl RouteError {
    /// A short, stable name for the kind of refusal, for metrics and Lambda's `errorType`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TopicMismatch { .. } => "TopicMismatch",
            Self::BadDeviceSerial { .. } => "InvalidDeviceSerial",
            Self::BadProjectKey { .. } => "InvalidProjectKey",
            Self::ProjectKeyMismatch { .. } => "ProjectKeyMismatch",
            Self::NoProjectKey => "NoProjectKey",
        }
    }
}

/// A serial is not secret, but it may hold control characters or be huge: show it escaped and short.
fn shown_serial(value: &str) -> String {
    let escaped: String = value.escape_debug().take(64).collect();
    format!("\"{escaped}\"")
}

/// Decides the route of one message. Explicit fields win over the topic's captures; a configured
/// project key wins over both, and any key a message names must equal it.
pub fn resolve(
    pattern: &TopicPattern,
    configured_key: Option<&ProjectKey>,
    claims: Claims<'_>,
) -> Result<Route, RouteError> {
    let captures =
        pattern
            .captures(claims.topic)
            .map_err(|mismatch| RouteError::TopicMismatch {
                pattern: pattern.to_string(),
                mismatch,
            })?;

    let (serial_source, serial_text) = match claims.device_serial {
        Some(explicit) => ("the event's device_serial field", explicit),
        None => ("the topic", captures.device_serial),
    };
    let device_serial = serial_text
        .parse()
        .map_err(|problem| RouteError::BadDeviceSerial {
            source_name: serial_source,
            problem,
            shown: shown_serial(serial_text),
        })?;

    let claimed_key = match (claims.project_key, captures.project_key) {
        (Some(explicit), _) => Some(("the event's project_key field", explicit)),
        (None, Some(from_topic)) => Some(("the topic", from_topic)),
        (None, None) => None,
    };
    let claimed_key = claimed_key
        .map(|(source_name, text)| {
            text.parse::<ProjectKey>()
                .map(|key| (source_name, key))
                .map_err(|problem| RouteError::BadProjectKey {
                    source_name,
                    problem,
                })
        })
        .transpose()?;

    let project_key = match (configured_key, claimed_key) {
        (Some(configured), Some((source_name, claimed))) if claimed != *configured => {
            return Err(RouteError::ProjectKeyMismatch {
                source_name,
                claimed: claimed.redacted(),
                configured: configured.redacted(),
            });
        }
        (Some(configured), _) => configured.clone(),
        (None, Some((_, claimed))) => claimed,
        (None, None) => return Err(RouteError::NoProjectKey),
    };

    Ok(Route {
        project_key,
        device_serial,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn claims(topic: &str) -> Claims<'_> {
        Claims {
            topic,
            device_serial: None,
            project_key: None,
        }
    }

    fn default_route(topic: &str) -> Result<Route, RouteError> {
        resolve(&TopicPattern::default(), None, claims(topic))
    }

    #[test]
    fn default_pattern_takes_serial_and_key_from_the_topic() {
        let route = default_route(&format!("prod/nrf52/DEMO-1_a/memfault/{KEY}/chunk")).unwrap();
        assert_eq!(route.device_serial.as_str(), "DEMO-1_a");
        assert_eq!(route.project_key.expose(), KEY);
    }

    #[test]
    fn default_pattern_refuses_topics_of_another_shape() {
        for (topic, expected) in [
            (
                "prod/board/SERIAL/memfault/KEY",
                "topic has 5 levels but the pattern needs 6",
            ),
            (
                "prod/board/SERIAL/memfault/KEY/chunk/extra",
                "topic has 7 levels but the pattern needs 6",
            ),
            (
                "dev/board/SERIAL/memfault/KEY/chunk",
                "topic level 1 should be \"prod\"",
            ),
            (
                "prod/board/SERIAL/other/KEY/chunk",
                "topic level 4 should be \"memfault\"",
            ),
            (
                "prod/board/SERIAL/memfault/KEY/chunks",
                "topic level 6 should be \"chunk\"",
            ),
        ] {
            let error = default_route(topic).unwrap_err();
            assert_eq!(error.kind(), "TopicMismatch", "{topic}");
            assert!(error.to_string().ends_with(expected), "{topic}: {error}");
        }
    }

    #[test]
    fn mismatch_messages_never_quote_the_topic() {
        let error = default_route(&format!("prod/b/S/memfault/{KEY}/chunk/x")).unwrap_err();
        assert!(!error.to_string().contains(KEY), "{error}");
    }

    #[test]
    fn mismatch_messages_shorten_a_key_written_into_the_pattern() {
        let pattern: TopicPattern = format!("fleet/{{device_serial}}/{KEY}/chunk")
            .parse()
            .unwrap();
        for topic in ["fleet/D1/other/chunk", "fleet/D1/chunk"] {
            let error = resolve(&pattern, None, claims(topic)).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.kind(), "TopicMismatch");
            assert!(
                message.contains("'fleet/{device_serial}/0123…/chunk'"),
                "{message}"
            );
            assert!(!message.contains("0123456789"), "{message}");
        }
        assert!(!format!("{pattern:?}").contains("0123456789"));
    }

    #[test]
    fn only_long_runs_of_key_characters_are_shortened() {
        assert_eq!(
            redact_key_like("prod/+/{device_serial}/memfault/{project_key}/chunk"),
            "prod/+/{device_serial}/memfault/{project_key}/chunk"
        );
        assert_eq!(
            redact_key_like(&format!("a/{KEY}/b{KEY}+/x-y_z")),
            "a/0123…/b012…+/x-y_z"
        );
        assert_eq!(redact_key_like("fifteen-chars-1"), "fifteen-chars-1");
        assert_eq!(redact_key_like("sixteen-chars-12"), "sixt…");
    }

    #[test]
    fn serials_that_would_change_the_path_are_refused() {
        for serial in [
            "..",
            "a b",
            "a%2F",
            "tab\there",
            "new\nline",
            "ü",
            "a?b",
            "a#b",
            "a\\b",
        ] {
            let topic = format!("prod/b/{serial}/memfault/{KEY}/chunk");
            let error = default_route(&topic).unwrap_err();
            assert_eq!(error.kind(), "InvalidDeviceSerial", "{serial:?}: {error}");
        }
        // '/' splits levels, so a serial with one cannot even fit the layout.
        let error = default_route(&format!("prod/b/a/b/memfault/{KEY}/chunk")).unwrap_err();
        assert_eq!(error.kind(), "TopicMismatch");
    }

    #[test]
    fn empty_and_overlong_serials_are_refused() {
        let error = default_route(&format!("prod/b//memfault/{KEY}/chunk")).unwrap_err();
        assert!(error.to_string().contains("is empty"), "{error}");
        let long = "s".repeat(129);
        let error = default_route(&format!("prod/b/{long}/memfault/{KEY}/chunk")).unwrap_err();
        assert!(error.to_string().contains("129 characters"), "{error}");
        let longest = "s".repeat(128);
        assert!(default_route(&format!("prod/b/{longest}/memfault/{KEY}/chunk")).is_ok());
    }

    #[test]
    fn bad_serials_are_shown_escaped_and_shortened() {
        let mut claims = claims("prod/b/x/memfault/k/chunk");
        let hostile = format!("evil\r\nX-Injected: 1{}", "z".repeat(200));
        claims.device_serial = Some(&hostile);
        let error = resolve(&TopicPattern::default(), None, claims).unwrap_err();
        let message = error.to_string();
        assert!(message.contains(r"evil\r\nX-Injected"), "{message}");
        assert!(!message.contains('\n'));
        assert!(message.len() < 250, "{message}");
    }

    #[test]
    fn keys_that_would_change_the_header_are_refused_without_echo() {
        for key in ["", "abc def", "abc\r\nX-Evil: 1", "k\u{0}"] {
            let topic = format!("prod/b/SERIAL/memfault/{key}/chunk");
            let error = default_route(&topic).unwrap_err();
            assert_eq!(error.kind(), "InvalidProjectKey", "{key:?}");
            assert!(!error.to_string().contains("X-Evil"));
        }
    }

    #[test]
    fn explicit_fields_win_over_the_topic() {
        let claims = Claims {
            topic: "prod/b/FROM-TOPIC/memfault/topickey/chunk",
            device_serial: Some("FROM-CLIENT-ID"),
            project_key: Some("eventkey"),
        };
        let route = resolve(&TopicPattern::default(), None, claims).unwrap();
        assert_eq!(route.device_serial.as_str(), "FROM-CLIENT-ID");
        assert_eq!(route.project_key.expose(), "eventkey");
    }

    #[test]
    fn configured_key_is_used_and_must_match_any_claimed_key() {
        let configured: ProjectKey = KEY.parse().unwrap();
        let pattern: TopicPattern = "fleet/{device_serial}/chunk".parse().unwrap();
        let route = resolve(&pattern, Some(&configured), claims("fleet/D1/chunk")).unwrap();
        assert_eq!(route.project_key, configured);

        let same = format!("prod/b/D1/memfault/{KEY}/chunk");
        let route = resolve(&TopicPattern::default(), Some(&configured), claims(&same)).unwrap();
        assert_eq!(route.project_key, configured);

        let other = "prod/b/D1/memfault/someoneelseskey/chunk";
        let error =
            resolve(&TopicPattern::default(), Some(&configured), claims(other)).unwrap_err();
        assert_eq!(error.kind(), "ProjectKeyMismatch");
        let message = error.to_string();
        assert!(
            message.contains("some…") && message.contains("0123…"),
            "{message}"
        );
        assert!(!message.contains(KEY) && !message.contains("someoneelseskey"));

        let mut explicit = claims("fleet/D1/chunk");
        explicit.project_key = Some("someoneelseskey");
        let error = resolve(&pattern, Some(&configured), explicit).unwrap_err();
        assert_eq!(error.kind(), "ProjectKeyMismatch");
    }

    #[test]
    fn a_key_must_come_from_somewhere() {
        let pattern: TopicPattern = "fleet/{device_serial}/chunk".parse().unwrap();
        let error = resolve(&pattern, None, claims("fleet/D1/chunk")).unwrap_err();
        assert_eq!(error, RouteError::NoProjectKey);
    }

    #[test]
    fn custom_patterns_with_wildcards() {
        let pattern: TopicPattern = "+/{project_key}/devices/{device_serial}/#".parse().unwrap();
        let captures = pattern
            .captures("eu/KEY/devices/D7/memfault/chunk")
            .unwrap();
        assert_eq!(captures.device_serial, "D7");
        assert_eq!(captures.project_key, Some("KEY"));
        // Like an MQTT filter, a trailing '#' also matches no further level at all.
        assert!(pattern.captures("eu/KEY/devices/D7").is_ok());
        let error = pattern.captures("eu/KEY/devices").unwrap_err();
        assert_eq!(
            error.to_string(),
            "topic has 3 levels but the pattern needs at least 4"
        );
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_reason() {
        for (pattern, expected) in [
            ("prod/+/memfault", PatternError::NoDeviceSerial),
            (
                "{device_serial}/{device_serial}",
                PatternError::RepeatedCapture("device_serial"),
            ),
            (
                "{device_serial}/{project_key}/{project_key}",
                PatternError::RepeatedCapture("project_key"),
            ),
            ("#/{device_serial}", PatternError::HashNotLast(1)),
            (
                "prod/dev+/{device_serial}",
                PatternError::PartialWildcard(2, "dev+".into()),
            ),
            (
                "prod/{serial}/x",
                PatternError::UnknownCapture(2, "{serial}".into()),
            ),
            (
                "prod/x{device_serial}",
                PatternError::PartialWildcard(2, "x{device_serial}".into()),
            ),
        ] {
            assert_eq!(
                pattern.parse::<TopicPattern>().unwrap_err(),
                expected,
                "{pattern}"
            );
        }
    }

    #[test]
    fn project_keys_are_redacted_in_debug_and_display() {
        let key: ProjectKey = KEY.parse().unwrap();
        assert_eq!(format!("{key}"), "0123…");
        assert_eq!(format!("{key:?}"), "ProjectKey(0123…)");
        assert_eq!(redact("abcdefgh"), "abcd…");
        assert_eq!(redact("abcdef"), "abc…");
        assert_eq!(redact("ab"), "a…");
        assert_eq!(redact(""), "…");
    }

    #[test]
    fn a_key_is_scrubbed_from_text_in_any_letter_case() {
        let key: ProjectKey = KEY.parse().unwrap();
        let echoed = format!(
            "headers: memfault-project-key: {KEY}\nX-Echo: {}; again {KEY}.",
            KEY.to_ascii_uppercase()
        );
        let scrubbed = key.scrub(&echoed);
        assert_eq!(
            scrubbed,
            "headers: memfault-project-key: 0123…\nX-Echo: 0123…; again 0123…."
        );
        assert!(matches!(key.scrub("nothing secret"), Cow::Borrowed(_)));
        // A key that is part of a longer word is still the key.
        assert_eq!(key.scrub(&format!("x{KEY}x")), "x0123…x");
    }
}
