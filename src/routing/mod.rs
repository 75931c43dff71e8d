//! Topic routing: which device and which Memfault project a chunk belongs to.
//!
//! Everything here is pure. The values it produces end up in a URL path (the device serial) and
//! an HTTP header (the project key), so they are validated to a strict alphabet instead of being
//! escaped: anything Memfault would not accept anyway is refused before any request is made.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The layout of Memfault's older MQTT guide, `prod/<board>/<device>/memfault/<key>/chunk`. It
/// stays the default so that a function configured before other layouts existed keeps working.
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

/// `MEMFAULT_PROJECT_KEYS`: the key of each project a topic's `{project_slug}` level may name,
/// written `slug=key,slug=key`. Whitespace around an entry, a slug or a key is ignored, so that a
/// long map may be wrapped over lines.
///
/// Each slug and each key appears once: two entries for one slug would leave the key to their
/// order, and one key under two slugs would send one project's chunks to another (a slug and a
/// key each name exactly one project). Its `Debug` shows the keys redacted, like `ProjectKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectKeys(BTreeMap<String, ProjectKey>);

impl ProjectKeys {
    /// The key of the project `slug` names, if the map lists it. Slugs are compared exactly, as
    /// MQTT compares topic levels.
    pub fn get(&self, slug: &str) -> Option<&ProjectKey> {
        self.0.get(slug)
    }
}

/// Why a `MEMFAULT_PROJECT_KEYS` value cannot work. Entries are counted from 1. Messages name
/// slugs, shortened where one is as long as a key (a key written where a slug belongs), and
/// never a key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProjectKeysError {
    #[error("entry {0} is empty; write slug=key entries separated by single commas")]
    EmptyEntry(usize),
    #[error("entry {0} is not slug=key")]
    NotAPair(usize),
    #[error("entry {entry}: the slug {problem}")]
    BadSlug {
        entry: usize,
        problem: IdentifierProblem,
    },
    #[error("entry {entry} (slug {slug}): the key {problem}")]
    BadKey {
        entry: usize,
        slug: String,
        problem: IdentifierProblem,
    },
    #[error("entries {first} and {second} both give the slug {slug} a key; give each project once")]
    RepeatedSlug {
        slug: String,
        first: usize,
        second: usize,
    },
    #[error(
        "the slugs {first} and {second} have the same key; a key belongs to one project, so one of them would receive the other's chunks"
    )]
    SharedKey { first: String, second: String },
}

impl FromStr for ProjectKeys {
    type Err = ProjectKeysError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut keys: BTreeMap<String, ProjectKey> = BTreeMap::new();
        let mut entry_of_slug: BTreeMap<String, usize> = BTreeMap::new();
        for (index, entry) in text.split(',').enumerate() {
            let entry_number = index + 1;
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(ProjectKeysError::EmptyEntry(entry_number));
            }
            let (slug, key) = entry
                .split_once('=')
                .ok_or(ProjectKeysError::NotAPair(entry_number))?;
            let (slug, key) = (slug.trim(), key.trim());
            check_identifier(slug).map_err(|problem| ProjectKeysError::BadSlug {
                entry: entry_number,
                problem,
            })?;
            let key: ProjectKey = key.parse().map_err(|problem| ProjectKeysError::BadKey {
                entry: entry_number,
                slug: redact_key_like(slug).into_owned(),
                problem,
            })?;
            if let Some(first) = entry_of_slug.insert(slug.to_owned(), entry_number) {
                return Err(ProjectKeysError::RepeatedSlug {
                    slug: redact_key_like(slug).into_owned(),
                    first,
                    second: entry_number,
                });
            }
            if let Some((other, _)) = keys.iter().find(|(_, known)| **known == key) {
                return Err(ProjectKeysError::SharedKey {
                    first: redact_key_like(other).into_owned(),
                    second: redact_key_like(slug).into_owned(),
                });
            }
            keys.insert(slug.to_owned(), key);
        }
        Ok(Self(keys))
    }
}

/// A `MEMFAULT_PROJECT_KEYS` value as an error may quote it, valid or not: every key redacted,
/// and every slug shortened where it is as long as a key.
pub fn redact_project_keys(text: &str) -> String {
    let entries: Vec<String> = text
        .split(',')
        .map(|entry| match entry.split_once('=') {
            Some((slug, key)) => format!("{}={}", redact_key_like(slug.trim()), redact(key.trim())),
            None if entry.trim().is_empty() => String::new(),
            // Not a pair: possibly a key on its own.
            None => redact(entry.trim()),
        })
        .collect();
    entries.join(",")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    AnyOne,
    DeviceSerial,
    ProjectKey,
    ProjectSlug,
    AnyRest,
}

/// An MQTT-style topic layout with named captures, e.g.
/// `memfault/{project_slug}/{device_serial}/chunks`.
///
/// Levels are separated by `/`. A level is a literal that must match exactly, `+` for any one
/// level, `{device_serial}` (required, once), `{project_slug}` or `{project_key}` (optional,
/// once, not both) to capture that level, or `#` as the last level for any number of remaining
/// levels.
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
    #[error(
        "names both {{project_slug}} and {{project_key}}; a topic names its project one way or the other"
    )]
    SlugAndKey,
    #[error("has '#' at level {0}; '#' may only be the last level")]
    HashNotLast(usize),
    #[error(
        "level {0} ({shown:?}) mixes wildcards or braces with text; '+', '#' and captures must fill a whole level",
        shown = redact_key_like(.1)
    )]
    PartialWildcard(usize, String),
    #[error(
        "level {0} names an unknown capture {shown:?}; use {{device_serial}}, {{project_slug}} or {{project_key}}",
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
                "{project_slug}" => Level::ProjectSlug,
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
            (Level::ProjectSlug, "project_slug"),
        ] {
            if levels.iter().filter(|level| **level == capture).count() > 1 {
                return Err(PatternError::RepeatedCapture(name));
            }
        }
        if levels.contains(&Level::ProjectKey) && levels.contains(&Level::ProjectSlug) {
            return Err(PatternError::SlugAndKey);
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
    pub project_slug: Option<&'t str>,
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
    /// Whether topics name their project by slug, whose key `MEMFAULT_PROJECT_KEYS` then gives.
    pub fn names_project_slug(&self) -> bool {
        self.levels.contains(&Level::ProjectSlug)
    }

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
        let mut project_slug = None;
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
                Level::ProjectSlug => project_slug = Some(*text),
                Level::Literal(_) | Level::AnyOne | Level::AnyRest => {}
            }
        }
        Ok(TopicCaptures {
            device_serial,
            project_key,
            project_slug,
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
        "project key from {source_name} ({claimed}) differs from the one in {configured_in} ({configured}); a device may not choose the project its data goes to"
    )]
    ProjectKeyMismatch {
        source_name: &'static str,
        claimed: String,
        configured_in: &'static str,
        configured: String,
    },
    #[error("topic names the project slug {slug}, which MEMFAULT_PROJECT_KEYS does not list")]
    UnknownProject { slug: String },
    #[error(
        "no project key: MEMFAULT_PROJECT_KEY is not set, the topic pattern has no {{project_key}} or {{project_slug}} level and the event has no project_key field"
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
            Self::UnknownProject { .. } => "UnknownProject",
            Self::NoProjectKey => "NoProjectKey",
        }
    }
}

/// A serial or a slug is not secret, but it may hold control characters or be huge: show it
/// escaped and short.
fn shown_level(value: &str) -> String {
    let escaped: String = value.escape_debug().take(64).collect();
    format!("\"{escaped}\"")
}

/// Decides the route of one message. Explicit fields win over the topic's captures. The
/// configuration's key wins over both, and any key a message names must equal it: the key
/// `project_keys` gives the topic's `{project_slug}` when the pattern has one (a slug it does not
/// list is refused), `configured_key` (`MEMFAULT_PROJECT_KEY`) otherwise. Init refuses a
/// configuration with both, so that one never silently overrides the other.
pub fn resolve(
    pattern: &TopicPattern,
    configured_key: Option<&ProjectKey>,
    project_keys: Option<&ProjectKeys>,
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
            shown: shown_level(serial_text),
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

    let configured = match captures.project_slug {
        Some(slug) => {
            let key = project_keys
                .and_then(|keys| keys.get(slug))
                .ok_or_else(|| RouteError::UnknownProject {
                    slug: redact_key_like(&shown_level(slug)).into_owned(),
                })?;
            Some(("MEMFAULT_PROJECT_KEYS", key))
        }
        None => configured_key.map(|key| ("MEMFAULT_PROJECT_KEY", key)),
    };

    let project_key = match (configured, claimed_key) {
        (Some((configured_in, configured)), Some((source_name, claimed)))
            if claimed != *configured =>
        {
            return Err(RouteError::ProjectKeyMismatch {
                source_name,
                claimed: claimed.redacted(),
                configured_in,
                configured: configured.redacted(),
            });
        }
        (Some((_, configured)), _) => configured.clone(),
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
        resolve(&TopicPattern::default(), None, None, claims(topic))
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
            let error = resolve(&pattern, None, None, claims(topic)).unwrap_err();
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
        let error = resolve(&TopicPattern::default(), None, None, claims).unwrap_err();
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
        let route = resolve(&TopicPattern::default(), None, None, claims).unwrap();
        assert_eq!(route.device_serial.as_str(), "FROM-CLIENT-ID");
        assert_eq!(route.project_key.expose(), "eventkey");
    }

    #[test]
    fn configured_key_is_used_and_must_match_any_claimed_key() {
        let configured: ProjectKey = KEY.parse().unwrap();
        let pattern: TopicPattern = "fleet/{device_serial}/chunk".parse().unwrap();
        let route = resolve(&pattern, Some(&configured), None, claims("fleet/D1/chunk")).unwrap();
        assert_eq!(route.project_key, configured);

        let same = format!("prod/b/D1/memfault/{KEY}/chunk");
        let route = resolve(
            &TopicPattern::default(),
            Some(&configured),
            None,
            claims(&same),
        )
        .unwrap();
        assert_eq!(route.project_key, configured);

        let other = "prod/b/D1/memfault/someoneelseskey/chunk";
        let error = resolve(
            &TopicPattern::default(),
            Some(&configured),
            None,
            claims(other),
        )
        .unwrap_err();
        assert_eq!(error.kind(), "ProjectKeyMismatch");
        let message = error.to_string();
        assert!(
            message.contains("some…") && message.contains("0123…"),
            "{message}"
        );
        assert!(!message.contains(KEY) && !message.contains("someoneelseskey"));

        let mut explicit = claims("fleet/D1/chunk");
        explicit.project_key = Some("someoneelseskey");
        let error = resolve(&pattern, Some(&configured), None, explicit).unwrap_err();
        assert_eq!(error.kind(), "ProjectKeyMismatch");
    }

    #[test]
    fn a_key_must_come_from_somewhere() {
        let pattern: TopicPattern = "fleet/{device_serial}/chunk".parse().unwrap();
        let error = resolve(&pattern, None, None, claims("fleet/D1/chunk")).unwrap_err();
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

    const GUIDE: &str = "memfault/{project_slug}/{device_serial}/chunks";
    const KEY_A: &str = "aaaaBBBBccccDDDDeeeeFFFF00001111";
    const KEY_B: &str = "bbbbCCCCddddEEEEffffGGGG22223333";

    fn two_projects() -> ProjectKeys {
        format!("project-a={KEY_A}, project-b={KEY_B}")
            .parse()
            .unwrap()
    }

    fn guide_route(keys: &ProjectKeys, claims: Claims<'_>) -> Result<Route, RouteError> {
        resolve(&GUIDE.parse().unwrap(), None, Some(keys), claims)
    }

    #[test]
    fn a_slug_selects_its_projects_key_and_is_never_sent_as_one() {
        let keys = two_projects();
        for (slug, key) in [("project-a", KEY_A), ("project-b", KEY_B)] {
            let topic = format!("memfault/{slug}/DEMO-1/chunks");
            let route = guide_route(&keys, claims(&topic)).unwrap();
            assert_eq!(route.device_serial.as_str(), "DEMO-1");
            assert_eq!(route.project_key.expose(), key);
        }
        // A slug the map does not list is refused, also when it is spelled like a key the map
        // holds: a slug is looked up, never used as a key.
        for slug in ["project-c", "Project-A", KEY_A] {
            let topic = format!("memfault/{slug}/DEMO-1/chunks");
            let error = guide_route(&keys, claims(&topic)).unwrap_err();
            assert_eq!(error.kind(), "UnknownProject", "{slug}");
            assert!(!error.to_string().contains(KEY_A), "{error}");
        }
        let error = guide_route(&keys, claims("memfault/project-c/DEMO-1/chunks")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "topic names the project slug \"project-c\", which MEMFAULT_PROJECT_KEYS does not list"
        );
        // Without a map no slug is known.
        let pattern: TopicPattern = GUIDE.parse().unwrap();
        let error =
            resolve(&pattern, None, None, claims("memfault/project-a/D/chunks")).unwrap_err();
        assert_eq!(error.kind(), "UnknownProject");
    }

    #[test]
    fn an_unknown_slug_is_shown_escaped_and_short() {
        let keys = two_projects();
        let hostile = format!("evil\r\n{}", "z".repeat(300));
        let topic = format!("memfault/{hostile}/D/chunks");
        let message = guide_route(&keys, claims(&topic)).unwrap_err().to_string();
        assert!(message.contains(r"evil\r\n"), "{message}");
        assert!(!message.contains('\n') && message.len() < 200, "{message}");
    }

    #[test]
    fn a_key_a_message_names_must_be_the_one_its_slug_maps_to() {
        let keys = two_projects();
        let mut explicit = claims("memfault/project-a/D1/chunks");
        explicit.project_key = Some(KEY_A);
        assert_eq!(
            guide_route(&keys, explicit).unwrap().project_key.expose(),
            KEY_A
        );
        explicit.project_key = Some(KEY_B);
        let error = guide_route(&keys, explicit).unwrap_err();
        assert_eq!(error.kind(), "ProjectKeyMismatch");
        let message = error.to_string();
        assert!(message.contains("MEMFAULT_PROJECT_KEYS"), "{message}");
        assert!(
            !message.contains(KEY_A) && !message.contains(KEY_B),
            "{message}"
        );
    }

    #[test]
    fn the_key_map_syntax() {
        let keys: ProjectKeys = format!(" project-a = {KEY_A} ,\n project_b={KEY_B}\n")
            .parse()
            .unwrap();
        assert_eq!(keys.get("project-a").unwrap().expose(), KEY_A);
        assert_eq!(keys.get("project_b").unwrap().expose(), KEY_B);
        assert_eq!(keys.get("project-b"), None);
        let one: ProjectKeys = "solo=YOUR_PROJECT_KEY".parse().unwrap();
        assert_eq!(one.get("solo").unwrap().expose(), "YOUR_PROJECT_KEY");
        let debug = format!("{keys:?}");
        assert!(
            debug.contains("project-a") && debug.contains("aaaa…"),
            "{debug}"
        );
        assert!(!debug.contains(KEY_A) && !debug.contains(KEY_B), "{debug}");
    }

    #[test]
    fn bad_key_maps_are_refused_without_quoting_a_key() {
        use IdentifierProblem::*;
        use ProjectKeysError::*;
        for (text, expected) in [
            (format!("a={KEY_A},,b={KEY_B}"), EmptyEntry(2)),
            (format!("a={KEY_A},"), EmptyEntry(2)),
            (",".to_owned(), EmptyEntry(1)),
            (format!("a={KEY_A},{KEY_B}"), NotAPair(2)),
            (
                format!("={KEY_A}"),
                BadSlug {
                    entry: 1,
                    problem: Empty,
                },
            ),
            (
                format!("a/b={KEY_A}"),
                BadSlug {
                    entry: 1,
                    problem: BadCharacter('/'),
                },
            ),
            (
                "a=".to_owned(),
                BadKey {
                    entry: 1,
                    slug: "a".into(),
                    problem: Empty,
                },
            ),
            (
                format!("a={KEY_A}=x"),
                BadKey {
                    entry: 1,
                    slug: "a".into(),
                    problem: BadCharacter('='),
                },
            ),
            (
                format!("a={KEY_A} {KEY_B}"),
                BadKey {
                    entry: 1,
                    slug: "a".into(),
                    problem: BadCharacter(' '),
                },
            ),
            (
                format!("a={KEY_A},b={KEY_B},a={KEY_B}"),
                RepeatedSlug {
                    slug: "a".into(),
                    first: 1,
                    second: 3,
                },
            ),
            (
                format!("a={KEY_A},b={KEY_A}"),
                SharedKey {
                    first: "a".into(),
                    second: "b".into(),
                },
            ),
            // Key and slug swapped: the key, read as a slug, is shortened like a key.
            (
                format!("{KEY_A}=a,{KEY_B}=a"),
                SharedKey {
                    first: "aaaa…".into(),
                    second: "bbbb…".into(),
                },
            ),
        ] {
            let error = text.parse::<ProjectKeys>().unwrap_err();
            assert_eq!(error, expected, "{text}");
            let message = error.to_string();
            assert!(
                !message.contains(KEY_A) && !message.contains(KEY_B),
                "{message}"
            );
        }
    }

    #[test]
    fn a_key_map_is_quoted_with_every_key_redacted() {
        assert_eq!(
            redact_project_keys(&format!("project-a={KEY_A}, project-b = {KEY_B},,{KEY_A}")),
            "project-a=aaaa…,project-b=bbbb…,,aaaa…"
        );
        assert_eq!(
            redact_project_keys(&format!("{KEY_A}={KEY_B}")),
            "aaaa…=bbbb…"
        );
    }

    #[test]
    fn slug_patterns() {
        let pattern: TopicPattern = GUIDE.parse().unwrap();
        assert!(pattern.names_project_slug());
        assert!(!TopicPattern::default().names_project_slug());
        let captures = pattern.captures("memfault/proj/D1/chunks").unwrap();
        assert_eq!(
            captures,
            TopicCaptures {
                device_serial: "D1",
                project_key: None,
                project_slug: Some("proj"),
            }
        );
        assert_eq!(
            "{project_slug}/{device_serial}/{project_slug}"
                .parse::<TopicPattern>()
                .unwrap_err(),
            PatternError::RepeatedCapture("project_slug")
        );
        let both = "{project_slug}/{device_serial}/{project_key}"
            .parse::<TopicPattern>()
            .unwrap_err();
        assert_eq!(both, PatternError::SlugAndKey);
        let unknown = "{slug}/{device_serial}"
            .parse::<TopicPattern>()
            .unwrap_err();
        assert!(unknown.to_string().contains("{project_slug}"), "{unknown}");
    }

    /// Every refusal a two-project configuration can produce, in every form it is shown in
    /// (the error's message, its Debug, the route's Debug and Display of the key), never holds
    /// a configured key, nor a key a message named.
    #[test]
    fn no_key_reaches_an_error_or_a_debug_line() {
        let keys = two_projects();
        let claimed = "cccc1111dddd2222eeee3333ffff4444";
        let topics = [
            "memfault/project-a/D1/chunks".to_owned(),
            format!("memfault/{KEY_B}/D1/chunks"),
            "memfault/project-a/bad serial/chunks".to_owned(),
            "memfault/project-a/D1/chunk".to_owned(),
        ];
        let mut shown = vec![format!("{keys:?}")];
        for topic in &topics {
            for project_key in [None, Some(claimed), Some("bad key")] {
                let claims = Claims {
                    topic,
                    device_serial: None,
                    project_key,
                };
                match guide_route(&keys, claims) {
                    Ok(route) => shown.push(format!("{route:?} {}", route.project_key)),
                    Err(error) => shown.push(format!("{error} {error:?}")),
                }
            }
        }
        assert!(shown.iter().any(|text| text.contains("UnknownProject")));
        assert!(shown.iter().any(|text| text.contains("ProjectKeyMismatch")));
        for text in &shown {
            for secret in [KEY_A, KEY_B, claimed] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
    }
}
