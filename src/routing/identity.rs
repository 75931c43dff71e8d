//! Device serials and project keys, validated to the alphabet Memfault accepts.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::redact::{redact, scrub};

const MAX_IDENTIFIER_LEN: usize = 128;

/// Memfault documents device serials as 1 to 128 characters of `[A-Za-z0-9_-]`; the same
/// alphabet covers every project key Memfault issues and cannot alter a path or a header.
pub(super) fn check_identifier(value: &str) -> Result<(), IdentifierProblem> {
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
        scrub(text, &self.0)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::KEY;

    #[test]
    fn project_keys_are_redacted_in_debug_and_display() {
        let key: ProjectKey = KEY.parse().unwrap();
        assert_eq!(format!("{key}"), "0123…");
        assert_eq!(format!("{key:?}"), "ProjectKey(0123…)");
    }

    #[test]
    fn a_key_scrubs_itself_from_text() {
        let key: ProjectKey = KEY.parse().unwrap();
        let echoed = format!("key {}.", KEY.to_ascii_uppercase());
        assert_eq!(key.scrub(&echoed), "key 0123….");
    }
}
