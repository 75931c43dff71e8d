//! Fault isolation: one device, one chunk or one mistake never holds back or condemns the rest.
//! Each test drives the real handler against a scripted Memfault and a mock SQS quarantine queue
//! on loopback, and checks the outcome class table of docs/delivery.md.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;
use aws_lambda_events::event::streams::KinesisEventResponse;
use base64::Engine as _;
use memfault_chunk_proxy::{Forwarder, Response};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Answers `status` to any request that carries `marker`, 202 to the rest.
struct RefuseCarrying {
    marker: Vec<u8>,
    status: u16,
}

impl Respond for RefuseCarrying {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let carries = request
            .body
            .windows(self.marker.len())
            .any(|window| window == self.marker.as_slice());
        ResponseTemplate::new(if carries { self.status } else { 202 })
    }
}

/// Answers 413 to a multipart request of more than `most` parts, as a server with a body limit.
struct RefuseMoreThan {
    most: usize,
}

impl Respond for RefuseMoreThan {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let parts = multipart_parts(request).len();
        ResponseTemplate::new(if parts > self.most { 413 } else { 202 })
    }
}

/// Answers 503 to every upload of device DOWN, 202 to the others.
async fn memfault_with_device_down() -> MockServer {
    server_answering_devices(&[("DOWN", 503)]).await
}

/// Every chunk Memfault accepted, per request, in the order the requests arrived.
async fn accepted_chunks(server: &MockServer, refused: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    for request in server.received_requests().await.unwrap() {
        let carried = if request.headers["content-type"] == "application/octet-stream" {
            vec![request.body.clone()]
        } else {
            multipart_parts(&request)
        };
        if !carried.iter().any(|chunk| chunk == refused) {
            chunks.extend(carried);
        }
    }
    chunks
}

fn data_of(record: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(record["requestPayload"]["data"].as_str().unwrap())
        .unwrap()
}

fn stream_forwarder(
    memfault: &MockServer,
    queue: &MockServer,
    tune: impl Fn(&mut Env),
) -> Forwarder {
    let mut config = with_quarantine_queue(config_for(&memfault.uri()), queue);
    tune(&mut config);
    forwarder(config)
}

/// A Kinesis record that entered its stream `age` ago.
fn record_aged(index: usize, event: &Value, age: Duration) -> Value {
    let mut record = record_of(index, event);
    let arrived = SystemTime::now() - age;
    record["kinesis"]["approximateArrivalTimestamp"] =
        json!(arrived.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
    record
}

#[tokio::test]
async fn a_refused_chunk_is_found_by_splitting_and_set_aside_alone() {
    let bad = b"BAD-CHUNK".to_vec();
    let server = server_answering(RefuseCarrying {
        marker: bad.clone(),
        status: 400,
    })
    .await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |_| {});
    let chunks: Vec<Vec<u8>> = (0..7)
        .map(|index| {
            if index == 4 {
                bad.clone()
            } else {
                chunk(0, index)
            }
        })
        .collect();
    let records = chunks
        .iter()
        .enumerate()
        .map(|(index, data)| record_of(index, &chunk_event("DEV", "Key", data)))
        .collect();

    let response = run_kinesis(&forwarder, batch(records), BUDGET).await;

    assert!(reported(&response).is_empty(), "{response:?}");
    let set_aside = quarantined(&queue).await;
    assert_eq!(set_aside.len(), 1, "only the refused chunk: {set_aside:?}");
    assert_eq!(data_of(&set_aside[0]), bad);
    assert_eq!(
        set_aside[0]["responseContext"]["errorType"],
        "Permanent.UpstreamRejected"
    );
    let good: Vec<Vec<u8>> = chunks
        .iter()
        .filter(|data| **data != bad)
        .cloned()
        .collect();
    assert_eq!(
        accepted_chunks(&server, &bad).await,
        good,
        "neighbours delivered, in order"
    );
}

#[tokio::test]
async fn a_request_memfault_finds_too_large_is_split_until_it_is_taken() {
    let server = server_answering(RefuseMoreThan { most: 50 }).await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |_| {});
    let chunks: Vec<Vec<u8>> = (0..214).map(|index| chunk(1, index)).collect();
    let records = chunks
        .iter()
        .enumerate()
        .map(|(index, data)| record_of(index, &chunk_event("BIG", "Key", data)))
        .collect();

    let response = run_kinesis(&forwarder, batch(records), BUDGET).await;

    assert!(reported(&response).is_empty());
    assert!(
        quarantined(&queue).await.is_empty(),
        "nothing good is set aside"
    );
    let mut delivered = Vec::new();
    for request in server.received_requests().await.unwrap() {
        let parts = multipart_parts(&request);
        if parts.len() <= 50 {
            delivered.extend(parts);
        }
    }
    assert_eq!(delivered, chunks, "all of them, in order");
}

#[tokio::test]
async fn a_refused_key_holds_its_chunks_sets_nothing_aside_and_stops_its_other_devices() {
    let server = server_answering(ResponseTemplate::new(403)).await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_UPLOAD_CONCURRENCY", 4)
    });
    let records: Vec<Value> = (0..40)
        .map(|index| {
            let event = chunk_event(&format!("D{}", index % 20), "Key", &chunk(index, 0));
            record_aged(index, &event, Duration::from_secs(3_600))
        })
        .collect();

    let response = run_kinesis(&forwarder, batch(records), BUDGET).await;

    assert_eq!(
        reported(&response).len(),
        40,
        "everything stays in the stream"
    );
    assert!(
        quarantined(&queue).await.is_empty(),
        "a wrong key drains nothing"
    );
    let requests = server.received_requests().await.unwrap().len();
    assert!(
        requests <= 4,
        "devices started after the refusal are not tried: {requests}"
    );
}

const STALL_LIMIT: Duration = Duration::from_secs(1);
/// Healthy devices in a held batch: more than the probes of one stall limit.
const HEALTHY_IN_BATCH: usize = 30;

/// UP0, DOWN, UP1, DOWN, then UP2 to UP29 (chunks 1 to 34): one failing device among healthy
/// ones, and records an hour old, older than any stall limit: age does not decide a stall.
fn batch_with_a_failing_device() -> Value {
    let serials = ["UP0", "DOWN", "UP1", "DOWN"]
        .map(String::from)
        .into_iter()
        .chain((2..HEALTHY_IN_BATCH).map(|n| format!("UP{n}")));
    let records = serials
        .enumerate()
        .map(|(index, serial)| {
            let event = chunk_event(&serial, "Key", &[index as u8 + 1]);
            record_aged(index, &event, Duration::from_secs(3_600))
        })
        .collect();
    batch(records)
}

/// Resends `event` as a held shard's mapping does, one invocation right after another, until
/// an answer reports nothing or `most` has passed; says how long that took and the answers.
async fn resend_until_released(
    forwarder: &Forwarder,
    event: impl Fn() -> Value,
    most: Duration,
) -> (Duration, Vec<KinesisEventResponse>) {
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < most {
        let answer = run_kinesis(forwarder, event(), BUDGET).await;
        let released = reported(&answer).is_empty();
        answers.push(answer);
        if released {
            break;
        }
        tokio::time::sleep(STALL_LIMIT / 30).await;
    }
    (started.elapsed(), answers)
}

/// The requests after the first `skip` that re-posted a chunk Memfault had already accepted
/// from another device than DOWN: the probes.
async fn probes(server: &MockServer, skip: usize) -> Vec<Vec<u8>> {
    let requests = server.received_requests().await.unwrap();
    requests[skip..]
        .iter()
        .filter(|request| serial_of(request) != "DOWN")
        .map(|request| request.body.clone())
        .collect()
}

fn assert_each_once_and_few(probes: &[Vec<u8>], during: Duration) {
    let distinct: std::collections::HashSet<&Vec<u8>> = probes.iter().collect();
    assert_eq!(distinct.len(), probes.len(), "a chunk probed twice");
    let most = (during.as_millis() / (STALL_LIMIT / 10).as_millis()) as usize + 1;
    assert!(
        probes.len() <= most,
        "{} probes in {during:?}: more than one per tenth of the stall limit",
        probes.len()
    );
}

#[tokio::test]
async fn a_device_failing_while_memfault_is_up_is_set_aside_after_the_stall_limit_of_healthy_time()
{
    let server = memfault_with_device_down().await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_STALL_LIMIT_SECONDS", STALL_LIMIT.as_secs());
        config.set("MEMFAULT_BATCH_MAX_CHUNKS", 1);
        config.set("MEMFAULT_MAX_ATTEMPTS", 1);
    });

    // Old records, but the device has just started failing: it keeps its place.
    let started = Instant::now();
    let first = run_kinesis(&forwarder, batch_with_a_failing_device(), BUDGET).await;
    assert_eq!(reported(&first), [sequence(1), sequence(3)]);
    assert!(quarantined(&queue).await.is_empty());
    let posts_before = server.received_requests().await.unwrap().len();

    // Lambda resends the batch from the checkpoint: the healthy records are answered from
    // memory, so nothing is delivered in the invocation; probes show Memfault up.
    let (took, answers) =
        resend_until_released(&forwarder, batch_with_a_failing_device, BUDGET).await;
    let held = answers.last().unwrap();
    assert!(reported(held).is_empty(), "{held:?}");
    assert!(
        started.elapsed() >= STALL_LIMIT,
        "set aside after {:?}",
        started.elapsed()
    );
    let set_aside = quarantined(&queue).await;
    let data: Vec<Vec<u8>> = set_aside.iter().map(data_of).collect();
    assert_eq!(data, [vec![2], vec![4]], "the device's records, in order");
    assert!(
        set_aside
            .iter()
            .all(|record| record["requestContext"]["condition"] == "Stalled")
    );
    let probes = probes(&server, posts_before).await;
    assert!(!probes.is_empty());
    assert_each_once_and_few(&probes, took);
}

#[tokio::test]
async fn an_outage_restarts_the_stall_clock() {
    let server = MockServer::start().await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_STALL_LIMIT_SECONDS", STALL_LIMIT.as_secs());
        config.set("MEMFAULT_BATCH_MAX_CHUNKS", 1);
        config.set("MEMFAULT_MAX_ATTEMPTS", 1);
    });
    let device_down =
        Mock::given(path("/api/v0/chunks/DOWN")).respond_with(ResponseTemplate::new(503));
    let all_down = Mock::given(method("POST")).respond_with(ResponseTemplate::new(503));
    let all_up = Mock::given(method("POST")).respond_with(ResponseTemplate::new(202));

    let guard = device_down.mount_as_scoped(&server).await;
    let up = all_up.mount_as_scoped(&server).await;
    let first = run_kinesis(&forwarder, batch_with_a_failing_device(), BUDGET).await;
    assert_eq!(reported(&first), [sequence(1), sequence(3)]);
    drop(up);
    // Memfault goes down for most of a stall limit: probes fail, and every clock starts again.
    let outage = all_down.mount_as_scoped(&server).await;
    let (_, during) =
        resend_until_released(&forwarder, batch_with_a_failing_device, STALL_LIMIT * 2 / 3).await;
    assert!(
        during
            .iter()
            .all(|answer| reported(answer) == [sequence(1), sequence(3)])
    );
    drop(outage);
    let _up = Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount_as_scoped(&server)
        .await;
    // Back up, and the device fails on: its healthy time starts now, not before the outage.
    let (took, after) =
        resend_until_released(&forwarder, batch_with_a_failing_device, BUDGET).await;
    assert!(
        reported(after.last().unwrap()).is_empty(),
        "never set aside"
    );
    assert!(took >= STALL_LIMIT, "set aside {took:?} after the outage");
    assert_eq!(quarantined(&queue).await.len(), 2);
    drop(guard);
}

#[tokio::test]
async fn a_refused_project_stalls_alone_while_other_projects_are_delivered() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::header("Memfault-Project-Key", "KeyA"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_STALL_LIMIT_SECONDS", STALL_LIMIT.as_secs());
        config.set("MEMFAULT_UPLOAD_CONCURRENCY", 1);
    });
    // Project A's devices A1 and A2, project B's B1 and B2, interleaved; then more of B's.
    let layout = [
        ("A1", "KeyA"),
        ("B1", "KeyB"),
        ("A2", "KeyA"),
        ("B2", "KeyB"),
        ("A1", "KeyA"),
    ];
    let more_of_b = (3..HEALTHY_IN_BATCH).map(|n| (format!("B{n}"), "KeyB"));
    let records: Vec<Value> = layout
        .map(|(serial, key)| (serial.to_owned(), key))
        .into_iter()
        .chain(more_of_b)
        .enumerate()
        .map(|(index, (serial, key))| record_of(index, &chunk_event(&serial, key, &[index as u8])))
        .collect();

    let started = Instant::now();
    let first = run_kinesis(&forwarder, batch(records.clone()), BUDGET).await;
    assert_eq!(reported(&first), [sequence(0), sequence(2), sequence(4)]);
    assert!(
        quarantined(&queue).await.is_empty(),
        "not before the stall limit"
    );

    let (_, answers) = resend_until_released(&forwarder, || batch(records.clone()), BUDGET).await;
    let held = answers.last().unwrap();
    assert!(reported(held).is_empty(), "{held:?}");
    assert!(started.elapsed() >= STALL_LIMIT);
    let set_aside = quarantined(&queue).await;
    // The quarantine queue keeps each device's order (a message group per device).
    let of_device = |serial: &str| -> Vec<Vec<u8>> {
        let topic = format!("prod/board/{serial}/memfault/KeyA/chunk");
        set_aside
            .iter()
            .filter(|record| record["requestPayload"]["topic"] == topic.as_str())
            .map(data_of)
            .collect()
    };
    assert_eq!(set_aside.len(), 3, "project A's records only");
    assert_eq!(of_device("A1"), [vec![0], vec![4]]);
    assert_eq!(of_device("A2"), [vec![2]]);
    assert!(set_aside.iter().all(|record| {
        record["requestContext"]["condition"] == "Stalled"
            && record["responseContext"]["errorType"] == "Retryable.UpstreamConfiguration"
    }));
}

#[tokio::test]
async fn in_an_outage_nothing_is_set_aside_and_few_devices_are_tried() {
    let server = server_answering(ResponseTemplate::new(503)).await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_UPLOAD_CONCURRENCY", 4);
        config.set("MEMFAULT_MAX_ATTEMPTS", 1);
        config.set("MEMFAULT_STALL_LIMIT_SECONDS", 1);
    });
    let records = (0..100)
        .map(|index| {
            let event = chunk_event(&format!("D{index}"), "Key", b"x");
            record_aged(index, &event, Duration::from_secs(3_600))
        })
        .collect();

    let response = run_kinesis(&forwarder, batch(records), BUDGET).await;

    assert_eq!(reported(&response).len(), 100);
    assert!(
        quarantined(&queue).await.is_empty(),
        "in an outage every device waits"
    );
    let requests = server.received_requests().await.unwrap().len();
    assert!(
        requests <= 8,
        "about upload_concurrency uploads, not the batch: {requests}"
    );
}

#[tokio::test]
async fn records_sent_again_after_a_failure_are_answered_from_memory() {
    let server = memfault_with_device_down().await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_MAX_ATTEMPTS", 1)
    });
    let serials = ["DOWN", "A", "B", "C", "D", "E"];
    let records: Vec<Value> = serials
        .iter()
        .enumerate()
        .map(|(index, serial)| record_of(index, &chunk_event(serial, "Key", b"x")))
        .collect();

    for _ in 0..3 {
        // Lambda resends the whole batch from the checkpoint, the first record.
        let response = run_kinesis(&forwarder, batch(records.clone()), BUDGET).await;
        assert_eq!(reported(&response), [sequence(0)]);
    }

    let requests = server.received_requests().await.unwrap();
    let healthy = requests.iter().filter(|r| serial_of(r) != "DOWN").count();
    // Each healthy record once, and no probe: Memfault accepted them less than a probe
    // interval (a tenth of the stall limit) ago.
    assert_eq!(healthy, 5, "each healthy record once");
    assert_eq!(
        requests.len() - healthy,
        3,
        "the failing one is tried each time"
    );
}

#[tokio::test]
async fn queued_mode_sets_aside_a_refused_chunk_and_delivers_the_rest_of_its_device() {
    let bad = b"BAD-CHUNK".to_vec();
    let server = server_answering(RefuseCarrying {
        marker: bad.clone(),
        status: 422,
    })
    .await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |_| {});
    let chunks = [b"one".to_vec(), bad.clone(), b"three".to_vec()];
    let response = run_sqs(&forwarder, queued_batch("DEV", &chunks), BUDGET).await;

    assert!(
        response.batch_item_failures.is_empty(),
        "nothing good reaches the DLQ"
    );
    let set_aside = quarantined(&queue).await;
    assert_eq!(set_aside.len(), 1);
    assert_eq!(data_of(&set_aside[0]), bad);
    assert_eq!(set_aside[0]["SQSMessage"]["messageId"], "m1");
    assert_eq!(
        accepted_chunks(&server, &bad).await,
        [b"one".to_vec(), b"three".to_vec()]
    );
}

/// Answers 500 to a SendMessage that carries `marker` (base64 in the failure record), 200 to
/// the others.
struct QueueRefusing {
    marker: String,
}

impl Respond for QueueRefusing {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&request.body);
        let status = if body.contains(&self.marker) {
            500
        } else {
            200
        };
        ResponseTemplate::new(status).set_body_json(json!({
            "MessageId": "5fea7756-0ea4-451a-a703-a558b933e274",
            "MD5OfMessageBody": "fafb00f5732ab283681e124bf8747ed1"
        }))
    }
}

#[tokio::test]
async fn after_a_failed_write_a_devices_later_records_are_kept_not_written_out_of_order() {
    let server = server_answering(ResponseTemplate::new(422)).await;
    let second = b"second-refused".to_vec();
    let queue = server_answering(QueueRefusing {
        marker: base64::engine::general_purpose::STANDARD.encode(&second),
    })
    .await;
    let forwarder = stream_forwarder(&server, &queue, |_| {});
    let chunks = [b"first-refused".to_vec(), second, b"third-refused".to_vec()];
    let response = run_sqs(&forwarder, queued_batch("DEV", &chunks), BUDGET).await;

    let reported: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.as_str())
        .collect();
    assert_eq!(reported, ["m1", "m2"], "both stay with their source");
    let written: Vec<Vec<u8>> = quarantined(&queue).await.iter().map(data_of).collect();
    assert!(
        !written.contains(&chunks[2]),
        "the third record was written after the second failed: the device's group is out of order"
    );
    assert_eq!(written.first(), Some(&chunks[0]));
}

#[tokio::test]
async fn a_replay_from_the_quarantine_queue_is_never_written_back_to_it() {
    let server = server_answering(ResponseTemplate::new(400)).await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |_| {});
    let records = vec![sqs_record(
        "r1",
        QUARANTINE_ARN,
        &chunk_event("DEV", "Key", b"x"),
    )];

    let response = run_sqs(&forwarder, batch(records), BUDGET).await;

    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "left to the redrive policy"
    );
    assert!(quarantined(&queue).await.is_empty());
}

#[tokio::test]
async fn a_direct_event_that_can_never_be_delivered_is_set_aside_in_device_order() {
    let server = server_answering(ResponseTemplate::new(400)).await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        let url = format!("{}/123456789012/memfault-failures.fifo", queue.uri());
        config.set("MEMFAULT_QUARANTINE_QUEUE_URL", url);
    });

    let response = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    let Ok(Response::SetAside(set_aside)) = response else {
        panic!("set aside, not an error Lambda would retry: {response:?}");
    };
    assert_eq!(set_aside.error_type, "Permanent.UpstreamRejected");
    let calls = queue.received_requests().await.unwrap();
    let call: Value = serde_json::from_slice(&calls[0].body).unwrap();
    assert_eq!(call["MessageGroupId"], "TESTSERIAL");
    assert_eq!(call["MessageDeduplicationId"].as_str().unwrap().len(), 64);
    let record: Value = serde_json::from_str(call["MessageBody"].as_str().unwrap()).unwrap();
    assert_eq!(record["requestPayload"], sample_event("heartbeat.json"));
}

#[tokio::test]
async fn quarantine_queue_writes_end_by_the_deadline_less_the_margin() {
    let server = server_answering(ResponseTemplate::new(400)).await;
    let queue = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&queue)
        .await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_DEADLINE_MARGIN_MS", 500);
    });
    let records = vec![record_of(0, &chunk_event("DEV", "Key", b"x"))];
    let started = Instant::now();

    let response = run_kinesis(&forwarder, batch(records), Duration::from_secs(2)).await;

    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_600),
        "answered after {took:?}"
    );
    assert_eq!(
        reported(&response),
        [sequence(0)],
        "not written: it stays in the stream"
    );
}

#[tokio::test]
async fn a_record_too_large_for_sqs_goes_to_the_stream_failure_bucket_instead_of_stalling_its_shard()
 {
    let server = server_answering(ResponseTemplate::new(202)).await;
    let queue = quarantine_queue_answering(200).await;
    let bucket = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(wiremock::matchers::path_regex(
            // Refused for its size, it still names its device: its group, in order with the rest.
            "^/failures/quarantine/DEV/[0-9a-f]{64}\\.json$",
        ))
        .respond_with(ResponseTemplate::new(200))
        .mount(&bucket)
        .await;
    // Kinesis takes records of up to 10 MiB; this one's failure record is over SQS's 1 MiB.
    let huge = vec![7u8; 1_200_000];
    let records = vec![
        record_of(0, &chunk_event("DEV", "Key", &huge)),
        record_of(1, &chunk_event("DEV", "Key", b"after")),
    ];
    let with_bucket = stream_forwarder(&server, &queue, |config| {
        config.set(
            "MEMFAULT_STREAM_FAILURE_BUCKET_URL",
            format!("{}/failures", bucket.uri()),
        );
    });
    let without_bucket = stream_forwarder(&server, &queue, |_| {});

    let kept = run_kinesis(&without_bucket, batch(records.clone()), BUDGET).await;
    let moved_on = run_kinesis(&with_bucket, batch(records), BUDGET).await;

    assert_eq!(
        reported(&kept),
        [sequence(0)],
        "without a bucket it stays in the stream"
    );
    assert!(reported(&moved_on).is_empty(), "{moved_on:?}");
    assert!(quarantined(&queue).await.is_empty());
    let puts = bucket.received_requests().await.unwrap();
    assert_eq!(puts.len(), 1);
    let authorization = puts[0].headers["authorization"].to_str().unwrap();
    assert!(
        authorization.contains("/eu-west-1/s3/aws4_request"),
        "{authorization}"
    );
    assert!(puts[0].headers.contains_key("x-amz-content-sha256"));
    let object: Value = serde_json::from_slice(&puts[0].body).unwrap();
    assert_eq!(data_of(&object), huge, "the record's data, whole");
    assert_eq!(
        object["responseContext"]["errorType"],
        "Permanent.PayloadTooLarge"
    );
}

#[tokio::test]
async fn lambda_retrying_a_delivered_direct_event_is_answered_without_a_second_post() {
    let server = server_answering(ResponseTemplate::new(202)).await;
    let forwarder = forwarder(config_for(&server.uri()));
    let event = sample_event("heartbeat.json");

    let first = invoke_as(&forwarder, event.clone(), BUDGET, "request-a").await;
    let retried = invoke_as(&forwarder, event.clone(), BUDGET, "request-a").await;
    let another = invoke_as(&forwarder, event, BUDGET, "request-b").await;

    assert!(matches!(first, Ok(Response::Delivered(_))), "{first:?}");
    let Ok(Response::DeliveredEarlier(earlier)) = retried else {
        panic!("answered from memory: {retried:?}");
    };
    assert_eq!(earlier.device_serial, "TESTSERIAL");
    assert!(
        matches!(another, Ok(Response::Delivered(_))),
        "a new event is posted"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn uploads_leave_the_quarantine_queue_its_write_budget_and_report_their_last_failure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(100)))
        .mount(&server)
        .await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        // The most attempts there may be: more than 1.3 s of 100 ms answers hold.
        config.set("MEMFAULT_MAX_ATTEMPTS", 20);
    });
    let started = Instant::now();

    let answer = invoke(
        &forwarder,
        chunk_event("DEV", "Key", b"x"),
        Duration::from_secs(2),
    )
    .await;

    // Deadline 2 s, margin 200 ms (support), write budget 500 ms: uploads stop by 1.3 s,
    // not by 1.8 s (deadline − margin) as they did before there was a budget.
    let error = answer.expect_err("Memfault never accepted it");
    // The last attempt may be cut short by the bound itself: a timeout, still a real failure.
    assert!(
        ["Retryable.UpstreamServerError", "Retryable.UpstreamTimeout"]
            .contains(&error.error_type().as_str()),
        "the last real failure, not 'no time left': {} {error}",
        error.error_type()
    );
    let last_post = server.received_requests().await.unwrap().len();
    assert!(last_post > 3, "it kept trying: {last_post} posts");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_650),
        "uploads ran on past deadline − margin − write budget: {took:?}"
    );
}

#[tokio::test]
async fn a_device_whose_uploads_hang_until_the_bound_still_leaves_time_for_the_probe() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v0/chunks/DOWN"))
        .respond_with(ResponseTemplate::new(202).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let queue = quarantine_queue_answering(200).await;
    let forwarder = stream_forwarder(&server, &queue, |config| {
        config.set("MEMFAULT_STALL_LIMIT_SECONDS", 2);
        config.set("MEMFAULT_BATCH_MAX_CHUNKS", 1);
    });
    // Each invocation: DOWN's upload runs to the upload bound (2 s − 200 ms − 500 ms), then the
    // probe has half the write budget.
    let budget = Duration::from_secs(2);

    // Each invocation lasts longer than three probe intervals: a stretch between two probes
    // that one such invocation spans still counts as healthy time.
    for _ in 0..2 {
        let held = run_kinesis(&forwarder, batch_with_a_failing_device(), budget).await;
        assert_eq!(reported(&held), [sequence(1), sequence(3)]);
    }
    let stalled = run_kinesis(&forwarder, batch_with_a_failing_device(), budget).await;

    assert!(reported(&stalled).is_empty(), "{stalled:?}");
    assert_eq!(quarantined(&queue).await.len(), 2);
    // At least one probe in each invocation after the first: the hung uploads left it time.
    // (More requests than that can be retries of the first deliveries on a loaded machine.)
    let probes = probes(&server, 0).await.len() - HEALTHY_IN_BATCH;
    assert!(probes >= 2, "{probes} probes in two held invocations");
}
