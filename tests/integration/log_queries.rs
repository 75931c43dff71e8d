//! The saved Logs Insights queries and metric filters of template.yaml against the lines the
//! built binary writes: every field a query or filter reads is on every line of each outcome it
//! selects. The queries are read from the template, so a new one is checked too; the lines come
//! from the function run as Lambda runs it (JSON logs, INFO), against loopback mocks.
//!
//! One exception, by design: a line about a record that names no valid device (a topic outside
//! the pattern, a bad serial, an event without a topic, a batch refused whole) has no
//! `device_serial` rather than an invented or an invalid one.

use std::collections::BTreeSet;
use std::path::Path;

use crate::binary::json_lines_of_one_invocation;
use crate::support::*;
use serde_json::{Value, json};
use wiremock::MockServer;

/// The error types of refusals whose record names no valid device.
const NAMES_NO_DEVICE: [&str; 4] = [
    "Permanent.TopicMismatch",
    "Permanent.InvalidDeviceSerial",
    "Permanent.InvalidEvent",
    "Permanent.MalformedBatch",
];

/// Which lines a query or filter looks at.
#[derive(Debug)]
enum Selection {
    /// `filter outcome in [...]`, `filter outcome = "..."`, `{ $.outcome = "..." }`.
    Outcomes(BTreeSet<String>),
    /// `filter ispresent(a) or ispresent(b)`: lines that carry any of them.
    AnyPresent(Vec<String>),
}

/// What one saved query or metric filter reads.
#[derive(Debug)]
struct LogReader {
    resource: String,
    selection: Selection,
    /// Each entry is read as one field: a line must carry at least one of its names (more
    /// than one for `coalesce(a, b)`).
    reads: Vec<Vec<String>>,
}

fn template() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml");
    std::fs::read_to_string(path).unwrap()
}

/// The resources of the template as text, by logical name: the layout `make lint` keeps (a
/// section at column 0, its entries at two spaces, their properties deeper).
fn resources(template: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            inside = line.trim_end() == "Resources:";
            continue;
        }
        if !inside {
            continue;
        }
        match line
            .strip_prefix("  ")
            .and_then(|rest| rest.strip_suffix(':'))
        {
            Some(name) if !name.starts_with([' ', '#']) => found.push((name.into(), String::new())),
            _ => {
                if let Some((_, body)) = found.last_mut() {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    found
}

/// The block scalar under `key:` (`|` or `|-`), dedented.
fn block_scalar(body: &str, key: &str) -> Option<String> {
    let mut lines = body.lines().skip_while(|line| {
        let line = line.trim_start();
        !(line.starts_with(&format!("{key}: |")))
    });
    let head = lines.next()?;
    let indent = head.len() - head.trim_start().len();
    let text: Vec<&str> = lines
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > indent)
        .map(str::trim)
        .collect();
    Some(text.join("\n"))
}

/// Every query and metric filter in the template that reads the function's log lines. A
/// resource that reads them in a way this test cannot (a dashboard's Logs Insights widget)
/// fails it: teach the test rather than leave it unchecked.
fn log_readers(template: &str) -> Vec<LogReader> {
    let mut readers = Vec::new();
    for (name, body) in resources(template) {
        let kind = body
            .lines()
            .find_map(|line| line.trim().strip_prefix("Type: "))
            .unwrap_or_default();
        match kind {
            "AWS::Logs::QueryDefinition" => {
                let text = block_scalar(&body, "QueryString")
                    .unwrap_or_else(|| panic!("{name}: no QueryString block"));
                readers.push(query(&name, &text));
            }
            "AWS::Logs::MetricFilter" => readers.push(metric_filter(&name, &body)),
            _ => assert!(
                !body.contains("SOURCE '") && !body.contains("QueryString"),
                "{name} ({kind}) reads the log lines in a way tests/integration/log_queries.rs does not check"
            ),
        }
    }
    readers
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Mark(char),
}

fn tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\'' {
            chars.next();
            let literal: String = chars.by_ref().take_while(|&d| d != c).collect();
            tokens.push(Token::Text(literal));
        } else if c.is_alphanumeric() || "@_$".contains(c) {
            let mut word = String::new();
            while let Some(&d) = chars
                .peek()
                .filter(|d| d.is_alphanumeric() || "@_.$".contains(**d))
            {
                word.push(d);
                chars.next();
            }
            tokens.push(Token::Word(word));
        } else {
            tokens.push(Token::Mark(c));
            chars.next();
        }
    }
    tokens
}

const KEYWORDS: [&str; 10] = [
    "as", "by", "in", "and", "or", "not", "asc", "desc", "like", "limit",
];

/// One Logs Insights query: which lines its filters select, and what its commands read.
fn query(resource: &str, text: &str) -> LogReader {
    let mut selection = None;
    let mut reads = Vec::new();
    let mut aliases = BTreeSet::new();
    for command in text.split('|') {
        let tokens = tokens(command);
        let Some(Token::Word(verb)) = tokens.first() else {
            panic!("{resource}: a command that is not a word: {command:?}");
        };
        let rest = &tokens[1..];
        match verb.as_str() {
            "filter" => {
                let selected = filter_selection(resource, rest);
                assert!(
                    selection.replace(selected).is_none(),
                    "{resource}: one filter"
                );
            }
            "fields" | "display" | "stats" | "sort" => {
                reads.extend(fields_read(rest, &mut aliases));
            }
            "limit" => {}
            other => panic!("{resource}: teach tests/integration/log_queries.rs `{other}`"),
        }
    }
    reads.sort();
    reads.dedup();
    LogReader {
        resource: resource.to_owned(),
        selection: selection.unwrap_or_else(|| panic!("{resource}: no filter")),
        reads,
    }
}

/// The lines a filter selects: `outcome = "x"`, `outcome in ["x", "y"]`, or
/// `ispresent(a) or ispresent(b)`. Anything else fails the test: teach it rather than have a
/// clause it does not understand widen or narrow the lines it checks.
fn filter_selection(resource: &str, tokens: &[Token]) -> Selection {
    let unknown = || -> ! {
        panic!("{resource}: teach tests/integration/log_queries.rs this filter: {tokens:?}")
    };
    let outcome = Token::Word("outcome".into());
    match tokens {
        [field, Token::Mark('='), Token::Text(value)] if *field == outcome => {
            Selection::Outcomes(BTreeSet::from([value.clone()]))
        }
        [
            field,
            Token::Word(in_),
            Token::Mark('['),
            list @ ..,
            Token::Mark(']'),
        ] if *field == outcome && in_ == "in" => {
            let values = list.iter().filter(|token| **token != Token::Mark(','));
            Selection::Outcomes(
                values
                    .map(|token| match token {
                        Token::Text(value) => value.clone(),
                        _ => unknown(),
                    })
                    .collect(),
            )
        }
        _ => Selection::AnyPresent(
            tokens
                .split(|token| *token == Token::Word("or".into()))
                .map(|clause| match clause {
                    [
                        Token::Word(f),
                        Token::Mark('('),
                        Token::Word(field),
                        Token::Mark(')'),
                    ] if f == "ispresent" => field.clone(),
                    _ => unknown(),
                })
                .collect(),
        ),
    }
}

/// The fields a `fields`, `display`, `stats` or `sort` command reads, each as the names one of
/// which a line must carry; names given with `as` are remembered and not fields.
fn fields_read(tokens: &[Token], aliases: &mut BTreeSet<String>) -> Vec<Vec<String>> {
    let mut reads = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        let Token::Word(word) = &tokens[index] else {
            index += 1;
            continue;
        };
        let called = tokens.get(index + 1) == Some(&Token::Mark('('));
        let after_as = index > 0 && tokens[index - 1] == Token::Word("as".into());
        if called && word == "coalesce" {
            let close = index
                + tokens[index..]
                    .iter()
                    .position(|t| *t == Token::Mark(')'))
                    .unwrap();
            let names = tokens[index + 2..close]
                .iter()
                .filter_map(|token| match token {
                    Token::Word(name) if !name.starts_with('@') => Some(name.clone()),
                    _ => None,
                });
            reads.push(names.collect());
            index = close + 1;
            continue;
        }
        if after_as {
            aliases.insert(word.clone());
        } else if !called
            && !word.starts_with('@')
            && !KEYWORDS.contains(&word.as_str())
            && !aliases.contains(word)
            && !word.chars().all(|c| c.is_ascii_digit())
        {
            reads.push(vec![word.clone()]);
        }
        index += 1;
    }
    reads
}

/// A JSON metric filter: `{ $.outcome = "x" && ... }`, with the fields `$.name` its pattern,
/// value and dimensions read.
fn metric_filter(resource: &str, body: &str) -> LogReader {
    let pattern = body
        .lines()
        .find_map(|line| line.trim().strip_prefix("FilterPattern:"))
        .unwrap_or_else(|| panic!("{resource}: no FilterPattern"))
        .trim()
        .trim_matches('\'');
    let outcomes: BTreeSet<String> = tokens(pattern)
        .windows(3)
        .filter_map(|three| match three {
            [Token::Word(field), Token::Mark('='), Token::Text(value)] if field == "$.outcome" => {
                Some(value.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        !outcomes.is_empty(),
        "{resource}: teach tests/integration/log_queries.rs a filter that selects no outcome"
    );
    let reads = body
        .split("$.")
        .skip(1)
        .map(|after| {
            let mut name = after.split(|c: char| !(c.is_alphanumeric() || "_.".contains(c)));
            vec![name.next().unwrap_or_default().to_owned()]
        })
        .collect();
    LogReader {
        resource: resource.to_owned(),
        selection: Selection::Outcomes(outcomes),
        reads,
    }
}

/// `span.requestId` and the like: a field under an object.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    name.split('.')
        .try_fold(line, |value, part| value.get(part))
        .filter(|value| !value.is_null())
}

/// What `reader` finds missing in `lines`, and the outcomes it selects that no line shows.
fn problems(reader: &LogReader, lines: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let selected: Vec<&Value> = match &reader.selection {
        Selection::Outcomes(outcomes) => {
            for outcome in outcomes {
                if !lines.iter().any(|line| line["outcome"] == outcome.as_str()) {
                    problems.push(format!("no line of outcome {outcome} was written to check"));
                }
            }
            let outcome = |line: &&Value| line["outcome"].as_str().unwrap_or_default().to_owned();
            lines
                .iter()
                .filter(|line| outcomes.contains(&outcome(line)))
                .collect()
        }
        Selection::AnyPresent(names) => lines
            .iter()
            .filter(|line| names.iter().any(|name| field(line, name).is_some()))
            .collect(),
    };
    if selected.is_empty() {
        problems.push("no line it selects was written to check".into());
    }
    for line in selected {
        for names in &reader.reads {
            if names.iter().any(|name| field(line, name).is_some()) {
                continue;
            }
            let names_no_device =
                NAMES_NO_DEVICE.contains(&line["error_type"].as_str().unwrap_or(""));
            if names.contains(&"device_serial".to_owned()) && names_no_device {
                continue;
            }
            problems.push(format!(
                "reads {} but this line has none: {line}",
                names.join(" or ")
            ));
        }
    }
    problems
}

/// Runs the function on `event` against `memfault`, with the log format and level the template
/// gives it (JSON, INFO), and returns the lines that have an outcome.
async fn outcome_lines(event: Value, memfault: &MockServer, env: &[(&str, &str)]) -> Vec<Value> {
    json_lines_of_one_invocation(event, memfault, env)
        .await
        .into_iter()
        .filter(|line| line.get("outcome").is_some())
        .collect()
}

/// Memfault that refuses the chunks of device REJ, is down for device DOWN, refuses the key of
/// device KEY and takes every other chunk.
async fn memfault() -> MockServer {
    server_answering_devices(&[("REJ", 400), ("DOWN", 503), ("KEY", 403)]).await
}

/// The lines of every outcome the queries select and of the outcomes beside them: direct
/// deliveries and failures, and a queued batch with a delivery, a chunk Memfault refuses,
/// refusals that name a valid device and one that names none, set aside on the quarantine queue.
async fn lines_of_every_outcome() -> Vec<Value> {
    let memfault = memfault().await;
    let queue = quarantine_queue_answering(200).await;
    let queue_url = format!("{}/123456789012/quarantine.fifo", queue.uri());
    let quarantine = [
        ("MEMFAULT_QUARANTINE_QUEUE_URL", queue_url.as_str()),
        ("MEMFAULT_MAX_ATTEMPTS", "1"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "SECRETEXAMPLE"),
    ];
    let mut lines = Vec::new();
    for device in ["OK", "DOWN", "KEY", "REJ"] {
        let event = chunk_event(device, "Key", b"chunk");
        lines.extend(outcome_lines(event, &memfault, &quarantine).await);
    }
    let records = vec![
        sqs_record("ok", INGEST_ARN, &chunk_event("OK", "Key", b"a")),
        sqs_record("rejected", INGEST_ARN, &chunk_event("REJ", "Key", b"b")),
        sqs_record(
            "bad-base64",
            INGEST_ARN,
            &json!({"data": "%%%", "topic": "prod/b/B64/memfault/Key/chunk"}),
        ),
        sqs_record(
            "no-device",
            INGEST_ARN,
            &json!({"data": "AQ==", "topic": "elsewhere/B64/chunk"}),
        ),
    ];
    let event = batch(records);
    lines.extend(outcome_lines(event, &memfault, &quarantine).await);
    lines
}

#[tokio::test]
async fn every_field_a_saved_query_or_metric_filter_reads_is_on_the_lines_it_selects() {
    let readers = log_readers(&template());
    assert!(readers.len() >= 3, "{readers:?}");
    let lines = lines_of_every_outcome().await;

    let mut found = Vec::new();
    for reader in &readers {
        for problem in problems(reader, &lines) {
            found.push(format!("{}: {problem}", reader.resource));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));

    // The refusal whose topic names a valid device names it; the one whose topic does not,
    // names none.
    let refused = |item: &str| {
        lines
            .iter()
            .find(|line| line["outcome"] == "refused" && line["item_id"] == item)
            .unwrap_or_else(|| panic!("no refusal of {item}: {lines:?}"))
    };
    assert_eq!(refused("bad-base64")["device_serial"], "B64");
    assert_eq!(refused("no-device").get("device_serial"), None);
    let upstream = |outcome: &str| {
        lines
            .iter()
            .find(|line| line["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {outcome} line: {lines:?}"))
    };
    // The same words as Lambda's errorType (docs/delivery.md).
    assert_eq!(
        upstream("upstream_unavailable")["error_type"],
        "Retryable.UpstreamServerError"
    );
    assert_eq!(
        upstream("upstream_rejected")["error_type"],
        "Permanent.UpstreamRejected"
    );
    assert_eq!(
        upstream("configuration_rejected")["error_type"],
        "Retryable.UpstreamConfiguration"
    );
    let documented = documented_outcomes();
    for outcome in lines.iter().filter_map(|line| line["outcome"].as_str()) {
        assert!(
            documented.contains(outcome),
            "outcome {outcome} is not in docs/configuration.md's outcome table"
        );
    }
}

/// The outcomes docs/configuration.md's table lists: rows under its `| outcome |` header.
fn documented_outcomes() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip_while(|line| !line.starts_with("| outcome |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| line.split('`').nth(1).map(str::to_owned))
        .collect()
}

/// The check is not vacuous: a line without a field that a query reads is found, whichever
/// query reads it, and a query that selects an outcome no line shows is found too.
#[test]
fn a_line_without_a_field_a_query_reads_is_found() {
    let readers = log_readers(&template());
    let reader = |resource: &str| readers.iter().find(|r| r.resource == resource).unwrap();
    let undelivered = reader("UndeliveredChunksQuery");
    assert!(matches!(&undelivered.selection, Selection::Outcomes(o) if o.contains("quarantined")));
    let line = json!({"outcome": "upstream_unavailable", "device_serial": "D", "chunks": 1});
    let found = problems(undelivered, &[line]).join("\n");
    assert!(
        found.contains("reads error_type but this line has none"),
        "{found}"
    );
    assert!(found.contains("no line of outcome quarantined"), "{found}");

    let slowest = reader("SlowestUploadsQuery");
    let batch = json!({"outcome": "batch", "slowest_upstream_ms": 3, "slowest_item_id": "m", "span": {"requestId": "r"}});
    let found = problems(slowest, &[batch]).join("\n");
    assert!(
        found.contains("reads device_serial or slowest_device_serial"),
        "{found}"
    );

    let filter = "  Chunks:\n    Type: AWS::Logs::MetricFilter\n    Properties:\n      FilterPattern: '{ $.outcome = \"quarantined\" }'\n      MetricTransformations:\n        - MetricValue: $.chunks\n";
    let readers = log_readers(&format!("Resources:\n{filter}"));
    let line = json!({"outcome": "quarantined"});
    let found = problems(&readers[0], &[line]).join("\n");
    assert!(
        found.contains("reads chunks but this line has none"),
        "{found}"
    );
}

/// A clause the test cannot read fails it, rather than widening or narrowing what it checks.
#[test]
#[should_panic(expected = "teach tests/integration/log_queries.rs this filter")]
fn a_filter_the_test_cannot_read_fails_it() {
    query(
        "Errors",
        "fields error_type | filter outcome = \"refused\" and level = \"ERROR\"",
    );
}
