//! `MEMFAULT_PROJECT_KEYS`, the map from a topic's project slug to that project's key.

use std::collections::BTreeMap;
use std::str::FromStr;

use thiserror::Error;

use crate::redact::redact_key_like;
use crate::routing::identity::{IdentifierProblem, ProjectKey, check_identifier};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::{KEY_A, KEY_B};

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
}
