//! Secrets as a message, a log line or an error may show them: shortened or cut out.
//!
//! A leaf: it knows text, not the crate's types, so any module can use it.

use std::borrow::Cow;

/// Shows enough of a secret to tell two apart, never enough to use one: the first four
/// characters, and never more than half of a short secret.
pub fn redact(secret: &str) -> String {
    let shown = (secret.chars().count() / 2).min(4);
    let prefix: String = secret.chars().take(shown).collect();
    format!("{prefix}…")
}

/// `text` with every occurrence of `secret`, in any letter case, replaced by its redacted form.
/// For text that may echo a secret it was not built from, such as an upstream's answer to a
/// request that carried the secret.
pub(crate) fn scrub<'t>(text: &'t str, secret: &str) -> Cow<'t, str> {
    // An empty secret occurs everywhere and would never advance the scan.
    if secret.is_empty() {
        return Cow::Borrowed(text);
    }
    // A plain scan: the secret is short and this runs only on error answers, and a search
    // library's automaton would add a quarter of a megabyte to a binary kept small for cold
    // starts. Only ASCII letters are folded and `secret` is whole characters, so a match always
    // starts and ends on a char boundary.
    let needle = secret.as_bytes();
    let bytes = text.as_bytes();
    let shown = redact(secret);
    let mut scrubbed = String::new();
    let (mut copied, mut at) = (0, 0);
    while at + needle.len() <= bytes.len() {
        if bytes[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            scrubbed.push_str(&text[copied..at]);
            scrubbed.push_str(&shown);
            at += needle.len();
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

/// Memfault does not publish the length of its project keys. Keys are random strings longer than
/// this (an assumption, true of every key we have seen); a literal word this long made only of
/// key characters is rare in a topic and merely shown shortened too.
const KEY_LIKE_LEN: usize = 16;

/// `text` with every run of `KEY_LIKE_LEN` or more key characters (`[A-Za-z0-9_-]`) redacted,
/// for configuration values such as a topic pattern that may have a key written into it.
pub(crate) fn redact_key_like(text: &str) -> Cow<'_, str> {
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

/// A `MEMFAULT_PROJECT_KEYS` value (`slug=key,slug=key`) as an error may quote it, valid or not:
/// every key redacted, and every slug shortened where it is as long as a key.
pub(crate) fn redact_project_keys(text: &str) -> String {
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

/// A URL as an error may quote it: user information (`user:password@`), query and fragment,
/// which can hold credentials or tokens, are replaced by `…`. Works on any text, URL or not.
pub(crate) fn redact_url(text: &str) -> String {
    let (text, fragment) = match text.split_once('#') {
        Some((before, _)) => (before, "#…"),
        None => (text, ""),
    };
    let (text, query) = match text.split_once('?') {
        Some((before, _)) => (before, "?…"),
        None => (text, ""),
    };
    let authority_start = text.find("://").map_or(0, |at| at + 3);
    let authority_end = text[authority_start..]
        .find('/')
        .map_or(text.len(), |at| authority_start + at);
    let authority = &text[authority_start..authority_end];
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => authority.to_owned(),
    };
    format!(
        "{}{authority}{}{query}{fragment}",
        &text[..authority_start],
        &text[authority_end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const KEY_A: &str = "aaaaBBBBccccDDDDeeeeFFFF00001111";
    const KEY_B: &str = "bbbbCCCCddddEEEEffffGGGG22223333";

    #[test]
    fn a_secret_is_shown_by_its_first_characters_only() {
        assert_eq!(redact("abcdefgh"), "abcd…");
        assert_eq!(redact("abcdef"), "abc…");
        assert_eq!(redact("ab"), "a…");
        assert_eq!(redact(""), "…");
    }

    #[test]
    fn a_secret_is_scrubbed_from_text_in_any_letter_case() {
        let echoed = format!(
            "headers: memfault-project-key: {KEY}\nX-Echo: {}; again {KEY}.",
            KEY.to_ascii_uppercase()
        );
        assert_eq!(
            scrub(&echoed, KEY),
            "headers: memfault-project-key: 0123…\nX-Echo: 0123…; again 0123…."
        );
        assert!(matches!(scrub("nothing secret", KEY), Cow::Borrowed(_)));
        // A secret that is part of a longer word is still the secret.
        assert_eq!(scrub(&format!("x{KEY}x"), KEY), "x0123…x");
        assert!(matches!(scrub("any text", ""), Cow::Borrowed("any text")));
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
}
