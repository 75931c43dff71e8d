//! Topic routing: which device and which Memfault project a chunk belongs to.
//!
//! Everything here is pure. The values it produces end up in a URL path (the device serial) and
//! an HTTP header (the project key), so they are validated to a strict alphabet instead of being
//! escaped: anything Memfault would not accept anyway is refused before any request is made.

mod identity;
mod pattern;
mod project_keys;

use thiserror::Error;

use crate::redact::redact_key_like;

pub use identity::ProjectKey;
pub(crate) use identity::{DeviceSerial, IdentifierProblem};
pub use pattern::TopicPattern;
pub(crate) use pattern::{DEFAULT_TOPIC_PATTERN, TopicMismatch};
pub use project_keys::ProjectKeys;

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

/// Where chunks' project keys come from, decided once from the configuration. A key a message
/// names (the event's `project_key` field, or a `{project_key}` topic level) must equal the
/// configured one, where there is one: a device may not choose its project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `MEMFAULT_PROJECT_KEY`: every chunk goes to this one project.
    Fixed(ProjectKey),
    /// `MEMFAULT_PROJECT_KEYS`: the topic's `{project_slug}` level names the project, whose key
    /// the map gives; a slug it does not list is refused.
    BySlug(ProjectKeys),
    /// Neither: each message names its own key.
    FromMessage,
}

/// A topic pattern and a key source that cannot work together: the problem, as one with
/// `MEMFAULT_PROJECT_KEYS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeySourceMismatch {
    #[error(
        "is needed because MEMFAULT_TOPIC_PATTERN has a {{project_slug}} level; MEMFAULT_PROJECT_KEY cannot tell which project a slug names: give it as MEMFAULT_PROJECT_KEYS=<slug>=<key> instead"
    )]
    SlugWithFixedKey,
    #[error(
        "is needed because MEMFAULT_TOPIC_PATTERN has a {{project_slug}} level: give each project's key as <slug>=<key>,<slug>=<key>"
    )]
    SlugWithoutKeys,
    #[error(
        "is set but MEMFAULT_TOPIC_PATTERN has no {{project_slug}} level, so no chunk could use it"
    )]
    KeysWithoutSlug,
}

/// Decides each message's route: the topic pattern with the source of project keys, built once
/// at init. A slug map goes with a pattern that has a `{project_slug}` level and only with one,
/// so that a configured key is never silently ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    pattern: TopicPattern,
    keys: KeySource,
}

impl Default for Router {
    /// The default pattern, each message naming its own key.
    fn default() -> Self {
        Self {
            pattern: TopicPattern::default(),
            keys: KeySource::FromMessage,
        }
    }
}

impl Router {
    pub fn new(pattern: TopicPattern, keys: KeySource) -> Result<Self, KeySourceMismatch> {
        match (pattern.names_project_slug(), &keys) {
            (true, KeySource::Fixed(_)) => Err(KeySourceMismatch::SlugWithFixedKey),
            (true, KeySource::FromMessage) => Err(KeySourceMismatch::SlugWithoutKeys),
            (false, KeySource::BySlug(_)) => Err(KeySourceMismatch::KeysWithoutSlug),
            _ => Ok(Self { pattern, keys }),
        }
    }

    pub fn pattern(&self) -> &TopicPattern {
        &self.pattern
    }

    pub fn key_source(&self) -> &KeySource {
        &self.keys
    }

    /// Decides the route of one message. Explicit fields win over the topic's captures; the
    /// configured key wins over both, and any key the message names must equal it.
    pub fn resolve(&self, claims: Claims<'_>) -> Result<Route, RouteError> {
        let captures =
            self.pattern
                .captures(claims.topic)
                .map_err(|mismatch| RouteError::TopicMismatch {
                    pattern: self.pattern.to_string(),
                    mismatch,
                })?;
        let device_serial = device_serial(claims.device_serial, captures.device_serial)?;
        let claimed = claimed_key(claims.project_key, captures.project_key)?;
        let project_key = match (self.configured_key(captures.project_slug)?, claimed) {
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

    /// The device a message names, whatever else is wrong with it (its key, its project, its
    /// payload): the serial `resolve` routes it to when the topic fits the pattern and the
    /// serial is valid. `None` when it names no valid device.
    pub fn named_device(&self, claims: Claims<'_>) -> Option<DeviceSerial> {
        let captures = self.pattern.captures(claims.topic).ok()?;
        device_serial(claims.device_serial, captures.device_serial).ok()
    }

    /// The key the configuration gives a message whose topic named `slug`, and the variable it
    /// is set in.
    fn configured_key(
        &self,
        slug: Option<&str>,
    ) -> Result<Option<(&'static str, &ProjectKey)>, RouteError> {
        match (&self.keys, slug) {
            (KeySource::Fixed(key), _) => Ok(Some(("MEMFAULT_PROJECT_KEY", key))),
            (KeySource::BySlug(keys), Some(slug)) => match keys.get(slug) {
                Some(key) => Ok(Some(("MEMFAULT_PROJECT_KEYS", key))),
                None => Err(RouteError::UnknownProject {
                    slug: redact_key_like(&shown_level(slug)).into_owned(),
                }),
            },
            // `new` pairs a map only with a pattern that captures a slug.
            (KeySource::BySlug(_), None) | (KeySource::FromMessage, _) => Ok(None),
        }
    }
}

/// The device serial: the event's explicit field, or else the topic's capture.
fn device_serial(explicit: Option<&str>, from_topic: &str) -> Result<DeviceSerial, RouteError> {
    let (source_name, text) = match explicit {
        Some(explicit) => ("the event's device_serial field", explicit),
        None => ("the topic", from_topic),
    };
    text.parse().map_err(|problem| RouteError::BadDeviceSerial {
        source_name,
        problem,
        shown: shown_level(text),
    })
}

/// The key a message names, if any, with where it named it: the event's explicit field wins
/// over the topic's capture.
fn claimed_key(
    explicit: Option<&str>,
    from_topic: Option<&str>,
) -> Result<Option<(&'static str, ProjectKey)>, RouteError> {
    let (source_name, text) = match (explicit, from_topic) {
        (Some(explicit), _) => ("the event's project_key field", explicit),
        (None, Some(from_topic)) => ("the topic", from_topic),
        (None, None) => return Ok(None),
    };
    text.parse()
        .map(|key| Some((source_name, key)))
        .map_err(|problem| RouteError::BadProjectKey {
            source_name,
            problem,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Shared with the tests of the submodules.
    pub(super) const KEY: &str = "0123456789abcdef0123456789abcdef";
    pub(super) const KEY_A: &str = "aaaaBBBBccccDDDDeeeeFFFF00001111";
    pub(super) const KEY_B: &str = "bbbbCCCCddddEEEEffffGGGG22223333";
    /// The layout of Memfault's current MQTT guide.
    pub(super) const GUIDE: &str = "memfault/{project_slug}/{device_serial}/chunks";

    fn claims(topic: &str) -> Claims<'_> {
        Claims {
            topic,
            device_serial: None,
            project_key: None,
        }
    }

    fn router(pattern: &str, keys: KeySource) -> Router {
        Router::new(pattern.parse().unwrap(), keys).unwrap()
    }

    fn default_route(topic: &str) -> Result<Route, RouteError> {
        Router::default().resolve(claims(topic))
    }

    #[test]
    fn default_pattern_takes_serial_and_key_from_the_topic() {
        let route = default_route(&format!("prod/nrf52/DEMO-1_a/memfault/{KEY}/chunk")).unwrap();
        assert_eq!(route.device_serial.as_str(), "DEMO-1_a");
        assert_eq!(route.project_key.expose(), KEY);
    }

    /// A refusal for the key, the project or the payload still names its device; a topic that
    /// does not fit, or a serial that is not valid, names none.
    #[test]
    fn the_named_device_is_the_one_resolve_would_route_to() {
        let guide = router(GUIDE, KeySource::BySlug(two_projects()));
        let unknown = claims("memfault/project-z/DEV-1/chunks");
        assert_eq!(guide.resolve(unknown).unwrap_err().kind(), "UnknownProject");
        assert_eq!(guide.named_device(unknown).unwrap().as_str(), "DEV-1");
        let explicit = Claims {
            device_serial: Some("DEV-2"),
            ..unknown
        };
        assert_eq!(guide.named_device(explicit).unwrap().as_str(), "DEV-2");
        let legacy = Router::default();
        assert_eq!(
            legacy
                .named_device(claims("prod/b/DEV-3/memfault/bad key/chunk"))
                .unwrap()
                .as_str(),
            "DEV-3"
        );
        for topic in [
            "prod/b/DEV-3/memfault",
            "prod/b/DEV 3/memfault/KEY/chunk",
            "prod/b/DEV%2F3/memfault/KEY/chunk",
        ] {
            assert_eq!(legacy.named_device(claims(topic)), None, "{topic}");
        }
        let bad_explicit = Claims {
            device_serial: Some("no/such"),
            ..claims("prod/b/DEV-3/memfault/KEY/chunk")
        };
        assert_eq!(legacy.named_device(bad_explicit), None);
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
        let pattern = format!("fleet/{{device_serial}}/{KEY}/chunk");
        let router = router(&pattern, KeySource::FromMessage);
        for topic in ["fleet/D1/other/chunk", "fleet/D1/chunk"] {
            let error = router.resolve(claims(topic)).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.kind(), "TopicMismatch");
            assert!(
                message.contains("'fleet/{device_serial}/0123…/chunk'"),
                "{message}"
            );
            assert!(!message.contains("0123456789"), "{message}");
        }
        assert!(!format!("{router:?}").contains("0123456789"));
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
        let error = Router::default().resolve(claims).unwrap_err();
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
        let route = Router::default().resolve(claims).unwrap();
        assert_eq!(route.device_serial.as_str(), "FROM-CLIENT-ID");
        assert_eq!(route.project_key.expose(), "eventkey");
    }

    #[test]
    fn configured_key_is_used_and_must_match_any_claimed_key() {
        let configured: ProjectKey = KEY.parse().unwrap();
        let fixed = || KeySource::Fixed(configured.clone());
        let fleet = router("fleet/{device_serial}/chunk", fixed());
        let route = fleet.resolve(claims("fleet/D1/chunk")).unwrap();
        assert_eq!(route.project_key, configured);

        let default_layout = Router::new(TopicPattern::default(), fixed()).unwrap();
        let same = format!("prod/b/D1/memfault/{KEY}/chunk");
        let route = default_layout.resolve(claims(&same)).unwrap();
        assert_eq!(route.project_key, configured);

        let other = "prod/b/D1/memfault/someoneelseskey/chunk";
        let error = default_layout.resolve(claims(other)).unwrap_err();
        assert_eq!(error.kind(), "ProjectKeyMismatch");
        let message = error.to_string();
        assert!(
            message.contains("some…") && message.contains("0123…"),
            "{message}"
        );
        assert!(!message.contains(KEY) && !message.contains("someoneelseskey"));

        let mut explicit = claims("fleet/D1/chunk");
        explicit.project_key = Some("someoneelseskey");
        let error = fleet.resolve(explicit).unwrap_err();
        assert_eq!(error.kind(), "ProjectKeyMismatch");
    }

    #[test]
    fn a_key_must_come_from_somewhere() {
        let fleet = router("fleet/{device_serial}/chunk", KeySource::FromMessage);
        let error = fleet.resolve(claims("fleet/D1/chunk")).unwrap_err();
        assert_eq!(error, RouteError::NoProjectKey);
    }

    fn two_projects() -> ProjectKeys {
        format!("project-a={KEY_A}, project-b={KEY_B}")
            .parse()
            .unwrap()
    }

    fn guide_route(keys: &ProjectKeys, claims: Claims<'_>) -> Result<Route, RouteError> {
        router(GUIDE, KeySource::BySlug(keys.clone())).resolve(claims)
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
    }

    /// A slug map goes with a `{project_slug}` level, and a slug level with a map: any other
    /// pairing would leave a configured key unused or every slug unknown.
    #[test]
    fn a_router_pairs_a_slug_level_with_a_map_only() {
        let key: ProjectKey = KEY.parse().unwrap();
        let guide: TopicPattern = GUIDE.parse().unwrap();
        let default = TopicPattern::default();
        for (pattern, keys, expected) in [
            (
                &guide,
                KeySource::Fixed(key.clone()),
                Err(KeySourceMismatch::SlugWithFixedKey),
            ),
            (
                &guide,
                KeySource::FromMessage,
                Err(KeySourceMismatch::SlugWithoutKeys),
            ),
            (&guide, KeySource::BySlug(two_projects()), Ok(())),
            (
                &default,
                KeySource::BySlug(two_projects()),
                Err(KeySourceMismatch::KeysWithoutSlug),
            ),
            (&default, KeySource::Fixed(key.clone()), Ok(())),
            (&default, KeySource::FromMessage, Ok(())),
        ] {
            let router = Router::new(pattern.clone(), keys.clone());
            assert_eq!(
                router.as_ref().map(|_| ()).map_err(|e| *e),
                expected,
                "{pattern} {keys:?}"
            );
            if let Ok(router) = router {
                assert_eq!((router.pattern(), router.key_source()), (pattern, &keys));
            }
        }
        assert_eq!(Router::default().pattern(), &default);
        assert_eq!(Router::default().key_source(), &KeySource::FromMessage);
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
