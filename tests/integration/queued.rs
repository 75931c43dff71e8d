//! Queued mode: SQS batches through the real handler against a mock Memfault on loopback.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use aws_lambda_events::event::sqs::SqsBatchResponse;
use serde_json::{Value, json};
use wiremock::matchers::{path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn record(message_id: &str, body: &Value) -> Value {
    sqs_record(message_id, INGEST_ARN, body)
}

fn failed_ids(response: &SqsBatchResponse) -> Vec<String> {
    let mut ids: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn one_multipart_request_per_device_with_its_chunks_in_order() {
    let server = server_answering(ResponseTemplate::new(202)).await;
    let forwarder = forwarder(config_for(&server.uri()));
    // Five devices, two projects, chunks interleaved the way a busy queue delivers them.
    let mut records = Vec::new();
    let mut expected: BTreeMap<(String, String), Vec<Vec<u8>>> = BTreeMap::new();
    for index in 0..8 {
        for device in 0..5 {
            let serial = format!("DEV{device}");
            let key = if device % 2 == 0 { "KeyEven" } else { "KeyOdd" };
            let bytes = chunk(device, index);
            records.push(record(
                &format!("m-{device}-{index}"),
                &chunk_event(&serial, key, &bytes),
            ));
            expected
                .entry((key.to_owned(), serial))
                .or_default()
                .push(bytes);
        }
    }

    let response = run_sqs(&forwarder, batch(records), BUDGET).await;

    assert!(response.batch_item_failures.is_empty());
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 5, "one request per (project key, device)");
    let mut received = BTreeMap::new();
    for request in &requests {
        let key = request.headers["memfault-project-key"]
            .to_str()
            .unwrap()
            .to_owned();
        let serial = request.url.path().rsplit('/').next().unwrap().to_owned();
        received.insert((key, serial), multipart_parts(request));
    }
    assert_eq!(received, expected);
}

#[tokio::test]
async fn a_device_with_one_chunk_gets_a_plain_request() {
    let server = server_answering(ResponseTemplate::new(202)).await;
    let forwarder = forwarder(config_for(&server.uri()));

    let response = run_sqs(&forwarder, sample_event("sqs-batch.json"), BUDGET).await;

    let requests = server.received_requests().await.unwrap();
    let second = requests
        .iter()
        .find(|request| request.url.path() == "/api/v0/chunks/SECONDDEVICE")
        .expect("request for the second device");
    assert_eq!(second.headers["content-type"], "application/octet-stream");
    assert_eq!(second.body, sample_payload("heartbeat.json"));
    let first = requests
        .iter()
        .find(|request| request.url.path() == "/api/v0/chunks/TESTSERIAL")
        .expect("request for the first device");
    let expected: Vec<Vec<u8>> = ["1-of-3", "2-of-3", "3-of-3"]
        .iter()
        .map(|part| sample_payload(&format!("multi-chunk/{part}.json")))
        .collect();
    assert_eq!(multipart_parts(first), expected);
    // The sample's last record is not base64 and is the only failure.
    assert_eq!(
        failed_ids(&response),
        ["0b6a7c5e-0000-4000-8000-000000000005"]
    );
}

#[tokio::test]
async fn batch_item_failures_name_exactly_the_undelivered_messages() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v0/chunks/REJECTED"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad chunk"))
        .mount(&server)
        .await;
    Mock::given(path("/api/v0/chunks/DOWN"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    Mock::given(path_regex("^/api/v0/chunks/OK[0-9]$"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let forwarder = forwarder(config_for(&server.uri()));
    let records = vec![
        record("ok-1", &chunk_event("OK1", "Key", b"a")),
        record("rejected-1", &chunk_event("REJECTED", "Key", b"b")),
        record(
            "bad-base64",
            &json!({"data": "%%%", "topic": "prod/b/OK1/memfault/Key/chunk"}),
        ),
        record("down-1", &chunk_event("DOWN", "Key", b"c")),
        record("ok-2", &chunk_event("OK2", "Key", b"d")),
        record(
            "bad-topic",
            &json!({"data": "AQ==", "topic": "prod/b/OK1/chunk"}),
        ),
        record("not-json", &json!("just a string")),
        record("down-2", &chunk_event("DOWN", "Key", b"e")),
        record("ok-3", &chunk_event("OK1", "Key", b"f")),
        record("rejected-2", &chunk_event("REJECTED", "Key", b"g")),
    ];

    let response = run_sqs(&forwarder, batch(records), BUDGET).await;

    assert_eq!(
        failed_ids(&response),
        [
            "bad-base64",
            "bad-topic",
            "down-1",
            "down-2",
            "not-json",
            "rejected-1",
            "rejected-2"
        ]
    );
    let requests = server.received_requests().await.unwrap();
    let to = |serial: &str| {
        requests
            .iter()
            .filter(|request| request.url.path().ends_with(&format!("/{serial}")))
            .count()
    };
    assert_eq!(
        to("REJECTED"),
        3,
        "a refused request is split until each chunk stands alone, and no 400 is retried"
    );
    assert_eq!(
        to("DOWN"),
        3,
        "a 503 is retried up to MEMFAULT_MAX_ATTEMPTS"
    );
    assert_eq!(to("OK1") + to("OK2"), 2);
}

#[tokio::test]
async fn a_failed_request_holds_back_the_rest_of_that_devices_chunks() {
    let server = server_answering(ResponseTemplate::new(503)).await;
    let mut config = config_for(&server.uri());
    config.set("MEMFAULT_BATCH_MAX_CHUNKS", 2);
    config.set("MEMFAULT_MAX_ATTEMPTS", 1);
    let forwarder = forwarder(config);
    let chunks: Vec<Vec<u8>> = (1..=5).map(|byte| vec![byte]).collect();

    let response = run_sqs(&forwarder, queued_batch("D1", &chunks), BUDGET).await;

    assert_eq!(failed_ids(&response), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn large_groups_are_split_and_sent_one_after_another() {
    let server =
        server_answering(ResponseTemplate::new(202).set_delay(Duration::from_millis(50))).await;
    let relay = Relay::start(*server.address()).await;
    let mut config = config_for(&relay.uri());
    config.set("MEMFAULT_BATCH_MAX_CHUNKS", 4);
    config.set("MEMFAULT_UPLOAD_CONCURRENCY", 8);
    let forwarder = forwarder(config);
    let chunks: Vec<Vec<u8>> = (0..10).map(|i| chunk(1, i)).collect();

    let response = run_sqs(&forwarder, queued_batch("ONE", &chunks), BUDGET).await;

    assert!(response.batch_item_failures.is_empty());
    let requests = server.received_requests().await.unwrap();
    let mut sizes = Vec::new();
    let mut received = Vec::new();
    for request in &requests {
        let parts = multipart_parts(request);
        sizes.push(parts.len());
        received.extend(parts);
    }
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(received, chunks);
    assert_eq!(
        relay.most_open_at_once(),
        1,
        "one device's requests never overlap"
    );
}

#[tokio::test]
async fn concurrent_uploads_stay_within_the_bound() {
    let server =
        server_answering(ResponseTemplate::new(202).set_delay(Duration::from_millis(100))).await;
    let relay = Relay::start(*server.address()).await;
    let mut config = config_for(&relay.uri());
    config.set("MEMFAULT_UPLOAD_CONCURRENCY", 3);
    let forwarder = forwarder(config);
    let records = (0..12)
        .map(|device| {
            let event = chunk_event(&format!("D{device}"), "Key", &chunk(device, 0));
            record(&format!("m{device}"), &event)
        })
        .collect();

    let response = run_sqs(&forwarder, batch(records), BUDGET).await;

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(server.received_requests().await.unwrap().len(), 12);
    // HTTP/1.1 carries one request per connection at a time, so connections open at once
    // bound the requests in flight; the uploads did overlap, up to the bound and no further.
    assert_eq!(relay.most_open_at_once(), 3);
    assert_eq!(relay.connections_opened(), 3);
}

#[tokio::test]
async fn replayed_failure_records_are_forwarded_like_direct_events() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v0/chunks/TESTSERIAL"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let forwarder = forwarder(config_for(&server.uri()));
    let replay = batch(vec![record(
        "replay-1",
        &sample_event("failure-record.json"),
    )]);

    let response = run_sqs(&forwarder, replay, BUDGET).await;

    assert!(response.batch_item_failures.is_empty());
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests[0].body, sample_payload("heartbeat.json"));
}

/// A batch of two records, the second without the field `missing`.
fn batch_with_a_record_without(missing: &str) -> Value {
    let mut anonymous = record("x", &chunk_event("D1", "Key", b"a"));
    anonymous.as_object_mut().unwrap().remove(missing);
    batch(vec![
        record("m1", &chunk_event("D1", "Key", b"b")),
        anonymous,
    ])
}

#[tokio::test]
async fn a_record_without_message_id_fails_the_batch_before_any_request() {
    assert_refused_whole(batch_with_a_record_without("messageId"), "messageId").await;
}

#[tokio::test]
async fn a_record_without_its_queue_fails_the_batch_before_any_request() {
    let event = batch_with_a_record_without("eventSourceARN");
    assert_refused_whole(event, "eventSourceARN").await;
}

#[tokio::test]
async fn a_malformed_sqs_batch_is_refused_whole() {
    let event = json!({"Records": [{"eventSource": "aws:sqs", "messageId": 5, "body": "{}"}]});
    assert_refused_whole(event, "no usable messageId").await;
}
