//! Properties over arbitrary input: parsing and routing never panic, and whatever they accept
//! cannot change the request's path or headers.

use http::{HeaderValue, Uri};
use memfault_chunk_proxy::ChunksUrl;
use memfault_chunk_proxy::parse_rule_event;
use memfault_chunk_proxy::{Claims, KeySource, ProjectKeys, Router, TopicPattern};
use proptest::prelude::*;
use serde_json::json;

/// Topic levels: valid serials, the default pattern's literals, and levels mixing in the
/// characters that matter (separators, wildcards, dots, percent signs, white space, control
/// characters, non-ASCII), so that both acceptance and refusal are exercised.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::string::string_regex("[A-Za-z0-9_-]{1,10}").unwrap(),
        1 => Just("prod".to_owned()),
        1 => Just("memfault".to_owned()),
        1 => Just("chunk".to_owned()),
        3 => proptest::string::string_regex("[A-Za-z0-9_\\-./%+# \t\r\n\u{0}é{}?]{0,12}").unwrap(),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(level(), 0..8).prop_map(|levels| levels.join("/")),
        (level(), level(), level())
            .prop_map(|(board, serial, key)| format!("prod/{board}/{serial}/memfault/{key}/chunk")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn accepted_routes_only_ever_name_the_device_in_the_path(
        topic in topic(),
        explicit_serial in proptest::option::of(level()),
        explicit_key in proptest::option::of(level()),
        pattern_choice in 0usize..3,
    ) {
        let pattern: TopicPattern = [
            "prod/+/{device_serial}/memfault/{project_key}/chunk",
            "{project_key}/{device_serial}/#",
            "+/{device_serial}",
        ][pattern_choice].parse().unwrap();
        let claims = Claims {
            topic: &topic,
            device_serial: explicit_serial.as_deref(),
            project_key: explicit_key.as_deref(),
        };
        let router = Router::new(pattern, KeySource::FromMessage).unwrap();
        if let Ok(route) = router.resolve(claims) {
            let base: ChunksUrl = "https://chunks.memfault.com".parse().unwrap();
            let uri: Uri = base.for_device(&route.device_serial).parse().unwrap();
            prop_assert_eq!(uri.host(), Some("chunks.memfault.com"));
            prop_assert_eq!(uri.query(), None);
            let serial = uri.path().strip_prefix("/api/v0/chunks/").unwrap();
            prop_assert_eq!(serial, route.device_serial.as_str());
            prop_assert!(!serial.is_empty() && serial.len() <= 128);
            prop_assert!(serial.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            let key = HeaderValue::from_str(route.project_key.expose()).unwrap();
            prop_assert!(key.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'));
        }
    }

    #[test]
    fn event_parsing_never_panics(data in ".{0,64}", topic in topic(), serial in proptest::option::of(".{0,8}")) {
        let event = json!({"data": data, "topic": topic, "device_serial": serial});
        if let Ok(message) = parse_rule_event(&event) {
            prop_assert!(!message.payload.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// An upstream answer with the key in it, in any letter case and anywhere (also next to
    /// multi-byte characters and overlapping other occurrences), never keeps it once scrubbed,
    /// and the text around it is kept as it was.
    #[test]
    fn scrubbed_text_never_holds_the_key(
        key in proptest::string::string_regex("[A-Za-z0-9_-]{4,40}").unwrap(),
        pieces in prop::collection::vec("[a-zé\u{1F600}: \\-]{0,6}", 0..6),
        case_flips in prop::collection::vec(any::<bool>(), 40),
    ) {
        let project_key: memfault_chunk_proxy::ProjectKey = key.parse().unwrap();
        let variant: String = key
            .chars()
            .zip(case_flips.iter().cycle())
            .map(|(c, flip)| if *flip { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        let text = pieces.join(&variant);
        let scrubbed = project_key.scrub(&text);
        prop_assert!(!scrubbed.to_ascii_lowercase().contains(&key.to_ascii_lowercase()));
        let unrelated = pieces.concat();
        if !unrelated.to_ascii_lowercase().contains(&key.to_ascii_lowercase()) {
            let kept = project_key.scrub(&unrelated);
            prop_assert_eq!(kept.as_ref(), unrelated.as_str());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// With a slug pattern, whatever the topic and whatever key the event claims, a chunk either
    /// goes with the key the map gives its slug or is refused: a slug is never sent as a key.
    #[test]
    fn a_slug_only_ever_selects_a_configured_key(
        slug in prop_oneof![
            Just("project-a".to_owned()),
            Just("project-b".to_owned()),
            Just("PROJECTKEYAAAA0000".to_owned()),
            level(),
        ],
        serial in level(),
        explicit_key in proptest::option::of(level()),
    ) {
        let keys: ProjectKeys = "project-a=PROJECTKEYAAAA0000,project-b=PROJECTKEYBBBB1111"
            .parse()
            .unwrap();
        let pattern: TopicPattern = "memfault/{project_slug}/{device_serial}/chunks".parse().unwrap();
        let topic = format!("memfault/{slug}/{serial}/chunks");
        let claims = Claims {
            topic: &topic,
            device_serial: None,
            project_key: explicit_key.as_deref(),
        };
        let router = Router::new(pattern, KeySource::BySlug(keys.clone())).unwrap();
        match router.resolve(claims) {
            Ok(route) => {
                let expected = keys.get(&slug).expect("only a listed slug is routed");
                prop_assert_eq!(&route.project_key, expected);
            }
            Err(error) => prop_assert!(!error.to_string().contains("PROJECTKEY"), "{}", error),
        }
    }
}
