//! Topic patterns: which levels of an MQTT topic hold the device serial and the project.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::redact::redact_key_like;

/// The layout of Memfault's older MQTT guide, `prod/<board>/<device>/memfault/<key>/chunk`. It
/// stays the default so that a function configured before other layouts existed keeps working.
pub(crate) const DEFAULT_TOPIC_PATTERN: &str =
    "prod/+/{device_serial}/memfault/{project_key}/chunk";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::GUIDE;

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
}
