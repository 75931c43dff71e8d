//! Properties over hostile envelopes: Kinesis batches, SQS batches and the S3 on-failure records
//! of Kinesis batches with any JSON value in any field (timestamps huge, negative, strings or
//! null; sequence numbers, ids and bodies of any type). The handler runs in-process against a
//! wiremock Memfault and quarantine queue, and whatever it is given, it answers: a response, or an
//! error whose `errorType` is one docs/delivery.md documents. Never a panic.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use crate::support::*;
use base64::Engine as _;
use memfault_chunk_proxy::{Forwarder, Response};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Every `errorType` in docs/delivery.md's table, read from the document itself, so that the
/// test and the documentation cannot drift apart.
static DOCUMENTED: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    let doc = include_str!("../../docs/delivery.md");
    doc.lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(|line| {
            let first_cell = line.split('|').nth(1).unwrap_or_default();
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
});

struct World {
    runtime: tokio::runtime::Runtime,
    forwarder: Forwarder,
    // Kept alive for the forwarder's sake.
    _memfault: MockServer,
    _queue: MockServer,
}

/// Memfault accepts most devices, fails DOWN and refuses the key `Refused`.
static WORLD: LazyLock<World> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (memfault, queue) = runtime.block_on(async {
        let memfault = MockServer::start().await;
        Mock::given(path("/api/v0/chunks/DOWN"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&memfault)
            .await;
        Mock::given(header("Memfault-Project-Key", "Refused"))
            .respond_with(ResponseTemplate::new(403))
            .mount(&memfault)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(202))
            .mount(&memfault)
            .await;
        (memfault, quarantine_queue_answering(200).await)
    });
    let mut config = with_quarantine_queue(config_for(&memfault.uri()), &queue);
    config.set("MEMFAULT_MAX_ATTEMPTS", 1);
    config.set("MEMFAULT_STALL_LIMIT_SECONDS", 1);
    World {
        runtime,
        forwarder: forwarder(config),
        _memfault: memfault,
        _queue: queue,
    }
});

/// Any JSON value, with the numbers and strings that matter for timestamps and identifiers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![1e19, 1e40, -1.0, -0.5, 0.0, 1.7e308, 1_700_000_000.25])
            .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[0-9]{0,40}".prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A field that is usually what Lambda sends and otherwise anything: one unusual field at a
/// time reaches code a batch refused whole for another would not.
fn field(usual: Value) -> impl Strategy<Value = Value> {
    prop_oneof![6 => Just(usual), 1 => any_json()]
}

/// An arrival time: Kinesis's seconds with a fraction, one the clock cannot hold, or anything.
fn timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        2 => Just(json!(1_700_000_000.5)),
        2 => prop::sample::select(vec![1e19, 1e40, 1.7e308, -1.0, -1e19, 18_446_744_073.8])
            .prop_map(Value::from),
        1 => any_json(),
    ]
}

/// A rule event for one of a few devices and keys (one failing, one refused), or anything.
fn rule_event() -> impl Strategy<Value = Value> {
    let devices = prop::sample::select(vec![
        ("DEV1", "Key"),
        ("DEV2", "Key"),
        ("DOWN", "Key"),
        ("DEV3", "Refused"),
    ]);
    let usual = (devices, any::<u8>())
        .prop_map(|((serial, key), byte)| chunk_event(serial, key, &[byte, 1, 2]));
    prop_oneof![3 => usual, 1 => any_json()]
}

/// Text a record carries: the rule's event as JSON, or any JSON value as text.
fn event_text() -> impl Strategy<Value = String> {
    rule_event().prop_map(|event| event.to_string())
}

/// Records like `usual` but for the fields at the JSON pointers of `drawn`, each drawn from the
/// strategy beside it, and the fields at the pointers of `loose`, each usually as in `usual` and
/// otherwise anything.
fn like(
    usual: Value,
    drawn: Vec<(&'static str, BoxedStrategy<Value>)>,
    loose: &[&'static str],
) -> impl Strategy<Value = Value> {
    let loose = loose.iter().map(|&pointer| {
        let value = usual.pointer(pointer).expect(pointer).clone();
        (pointer, field(value).boxed())
    });
    let (pointers, strategies): (Vec<_>, Vec<_>) = drawn.into_iter().chain(loose).unzip();
    strategies.prop_map(move |values| {
        let mut record = usual.clone();
        for (pointer, value) in pointers.iter().zip(values) {
            *record.pointer_mut(pointer).expect(pointer) = value;
        }
        record
    })
}

fn any_kinesis_record() -> impl Strategy<Value = Value> {
    let data = event_text()
        .prop_map(|text| Value::from(base64::engine::general_purpose::STANDARD.encode(text)));
    let sequence_number = (0usize..6)
        .prop_map(sequence)
        .prop_flat_map(|s| field(Value::from(s)));
    like(
        kinesis_record(&sequence(0), b""),
        vec![
            ("/kinesis/sequenceNumber", sequence_number.boxed()),
            (
                "/kinesis/data",
                prop_oneof![3 => data, 1 => any_json()].boxed(),
            ),
            ("/kinesis/approximateArrivalTimestamp", timestamp().boxed()),
        ],
        &[
            "/kinesis/partitionKey",
            "/eventSourceARN",
            "/eventID",
            "/eventSource",
        ],
    )
}

fn any_sqs_record() -> impl Strategy<Value = Value> {
    let body = prop_oneof![3 => event_text().prop_map(Value::from), 1 => any_json()];
    like(
        sqs_message("0f5e6a4e-6b43-4a52-9b8c-2a1f7b2c9d10", INGEST_ARN, ""),
        vec![("/body", body.boxed())],
        &[
            "/messageId",
            "/attributes",
            "/messageAttributes",
            "/eventSource",
            "/eventSourceARN",
        ],
    )
}

fn records(record: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::vec(record, 1..6).prop_map(batch),
        1 => any_json().prop_map(|records| json!({"Records": records})),
    ]
}

fn failure_record() -> impl Strategy<Value = Value> {
    let payload = records(any_kinesis_record()).prop_map(|batch| Value::from(batch.to_string()));
    (
        prop_oneof![3 => payload, 1 => any_json()],
        field(json!({"shardId": "shardId-000000000000", "batchSize": 1})),
        field(json!({"condition": "RecordAgeExceeded", "approximateInvokeCount": 3})),
    )
        .prop_map(|(payload, info, context)| {
            json!({
                "requestContext": context,
                "KinesisBatchInfo": info,
                "payload": payload,
                "version": "1.0",
            })
        })
}

fn answer_is_documented(event: Value) -> Result<(), TestCaseError> {
    let world = &*WORLD;
    let answer = world
        .runtime
        .block_on(invoke(&world.forwarder, event, Duration::from_secs(3)));
    let error_type = match answer {
        Ok(Response::SetAside(set_aside)) => set_aside.error_type,
        Ok(_) => return Ok(()),
        Err(error) => error.error_type(),
    };
    prop_assert!(
        DOCUMENTED.contains(&error_type),
        "errorType {error_type} is not in docs/delivery.md's table"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_kinesis_batch_is_answered_in_documented_words(event in records(any_kinesis_record())) {
        answer_is_documented(event)?;
    }

    #[test]
    fn any_sqs_batch_is_answered_in_documented_words(event in records(any_sqs_record())) {
        answer_is_documented(event)?;
    }

    #[test]
    fn any_kinesis_failure_record_is_answered_in_documented_words(event in failure_record()) {
        answer_is_documented(event)?;
    }

    #[test]
    fn any_direct_event_is_answered_in_documented_words(event in rule_event()) {
        answer_is_documented(event)?;
    }
}

#[test]
fn the_documented_set_is_read_from_the_table() {
    for expected in [
        "Permanent.InvalidEvent",
        "Retryable.UpstreamServerError",
        "Retryable.UpstreamDeadline",
    ] {
        assert!(DOCUMENTED.contains(expected), "{expected}: {DOCUMENTED:?}");
    }
}
