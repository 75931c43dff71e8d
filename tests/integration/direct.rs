//! Direct mode through the real handler against a mock Memfault on loopback.

use std::time::{Duration, Instant};

use crate::support::*;
use memfault_chunk_proxy::Response;
use memfault_chunk_proxy::USER_AGENT_VALUE;
use memfault_chunk_proxy::{Delivered, ForwardError};
use serde_json::json;
use wiremock::matchers::{body_bytes, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn delivered(result: Result<Response, ForwardError>) -> Delivered {
    match result {
        Ok(Response::Delivered(delivered)) => delivered,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

fn failed(result: Result<Response, ForwardError>) -> ForwardError {
    match result {
        Err(error) => error,
        Ok(response) => panic!("expected an error, got {response:?}"),
    }
}

async fn accepting_server() -> MockServer {
    server_answering(ResponseTemplate::new(202)).await
}

#[tokio::test]
async fn heartbeat_reaches_memfault_byte_for_byte() {
    let server = MockServer::start().await;
    let chunk = sample_payload("heartbeat.json");
    Mock::given(method("POST"))
        .and(path("/api/v0/chunks/TESTSERIAL"))
        .and(header("Memfault-Project-Key", SAMPLE_KEY))
        .and(header("Content-Type", "application/octet-stream"))
        .and(header("User-Agent", USER_AGENT_VALUE))
        .and(header("Content-Length", chunk.len().to_string().as_str()))
        .and(body_bytes(chunk.clone()))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let forwarder = forwarder(config_for(&server.uri()));

    let result = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    assert_eq!(
        delivered(result),
        Delivered {
            device_serial: "TESTSERIAL".into(),
            bytes: chunk.len(),
            status: 202,
            attempts: 1
        }
    );
    assert!(USER_AGENT_VALUE.starts_with("memfault-chunk-proxy/"));
}

#[tokio::test]
async fn multi_chunk_message_is_posted_in_order() {
    let server = accepting_server().await;
    let forwarder = forwarder(config_for(&server.uri()));
    let parts = [
        "multi-chunk/1-of-3.json",
        "multi-chunk/2-of-3.json",
        "multi-chunk/3-of-3.json",
    ];

    for part in parts {
        delivered(invoke(&forwarder, sample_event(part), BUDGET).await);
    }

    let received: Vec<Vec<u8>> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|request| request.body)
        .collect();
    let expected: Vec<Vec<u8>> = parts.iter().map(|part| sample_payload(part)).collect();
    assert_eq!(received, expected);
    // The last chunk of a message is short and still legitimate.
    assert!(expected[2].len() < expected[0].len());
}

#[tokio::test]
async fn custom_layout_with_explicit_fields() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v0/chunks/nrf-0042"))
        .and(header("Memfault-Project-Key", SAMPLE_KEY))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config_for(&server.uri());
    let pattern = "fleet/+/devices/{device_serial}/memfault";
    config.set("MEMFAULT_TOPIC_PATTERN", pattern);
    let forwarder = forwarder(config);

    let result = invoke(&forwarder, sample_event("custom-layout.json"), BUDGET).await;

    assert_eq!(delivered(result).device_serial, "nrf-0042");
}

#[tokio::test]
async fn failure_destination_record_is_forwarded_like_the_original_event() {
    let server = MockServer::start().await;
    Mock::given(path("/api/v0/chunks/TESTSERIAL"))
        .and(body_bytes(sample_payload("heartbeat.json")))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let forwarder = forwarder(config_for(&server.uri()));

    let result = invoke(&forwarder, sample_event("failure-record.json"), BUDGET).await;

    assert_eq!(delivered(result).status, 202);
}

#[tokio::test]
async fn bad_events_are_refused_without_any_request() {
    let server = accepting_server().await;
    let forwarder = forwarder(config_for(&server.uri()));
    let cases = [
        (
            "bad/missing-data.json",
            "Permanent.InvalidEvent",
            "no \"data\" field",
        ),
        (
            "bad/data-not-a-string.json",
            "Permanent.InvalidEvent",
            "\"data\" must be a string",
        ),
        (
            "bad/bad-base64.json",
            "Permanent.InvalidBase64",
            "not valid base64",
        ),
        (
            "bad/empty-payload.json",
            "Permanent.EmptyPayload",
            "payload is empty",
        ),
        (
            "bad/topic-mismatch.json",
            "Permanent.TopicMismatch",
            "level 4 should be \"memfault\"",
        ),
        (
            "bad/serial-path-injection.json",
            "Permanent.InvalidDeviceSerial",
            "contains '.'",
        ),
        (
            "bad/key-header-injection.json",
            "Permanent.InvalidProjectKey",
            "contains '\\r'",
        ),
    ];

    for (event, error_type, message) in cases {
        let error = failed(invoke(&forwarder, sample_event(event), BUDGET).await);
        assert_eq!(error.error_type(), error_type, "{event}: {error}");
        assert!(error.to_string().contains(message), "{event}: {error}");
    }
    let oversized = json!({
        "data": "A".repeat(200_000),
        "topic": "prod/b/TESTSERIAL/memfault/k/chunk"
    });
    let error = failed(invoke(&forwarder, oversized, BUDGET).await);
    assert_eq!(error.error_type(), "Permanent.PayloadTooLarge");
    let error = failed(invoke(&forwarder, json!([1, 2]), BUDGET).await);
    assert_eq!(error.error_type(), "Permanent.InvalidEvent");

    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_device_cannot_choose_another_project() {
    let server = accepting_server().await;
    let mut config = config_for(&server.uri());
    config.set("MEMFAULT_PROJECT_KEY", "ConfiguredKey0001");
    let forwarder = forwarder(config);

    let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);

    assert_eq!(error.error_type(), "Permanent.ProjectKeyMismatch");
    assert!(!error.to_string().contains(SAMPLE_KEY), "{error}");
    assert!(!error.to_string().contains("ConfiguredKey0001"), "{error}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn configured_key_replaces_a_topic_without_one() {
    let server = MockServer::start().await;
    Mock::given(header("Memfault-Project-Key", "ConfiguredKey0001"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config_for(&server.uri());
    config.set("MEMFAULT_PROJECT_KEY", "ConfiguredKey0001");
    config.set("MEMFAULT_TOPIC_PATTERN", "things/{device_serial}/chunks");
    let forwarder = forwarder(config);
    let event = json!({"data": "CAKn", "topic": "things/D-1/chunks"});

    assert_eq!(
        delivered(invoke(&forwarder, event, BUDGET).await).device_serial,
        "D-1"
    );
}

#[tokio::test]
async fn server_error_then_success_is_delivered_on_the_second_attempt() {
    let server =
        server_answering_once_then(ResponseTemplate::new(500), ResponseTemplate::new(202)).await;
    let forwarder = forwarder(config_for(&server.uri()));

    let result = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    assert_eq!(delivered(result).attempts, 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn unavailable_forever_stops_after_the_configured_attempts() {
    for status in [503, 529, 502] {
        let server =
            server_answering(ResponseTemplate::new(status).set_body_string("try later")).await;
        let mut config = config_for(&server.uri());
        config.set("MEMFAULT_MAX_ATTEMPTS", 4);
        let forwarder = forwarder(config);

        let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);

        assert_eq!(error.error_type(), "Retryable.UpstreamServerError");
        let message = error.to_string();
        assert!(message.contains("after 4 attempt(s)"), "{message}");
        assert!(
            message.contains("MEMFAULT_MAX_ATTEMPTS reached"),
            "{message}"
        );
        assert!(message.contains(&format!("HTTP {status}")), "{message}");
        assert_eq!(server.received_requests().await.unwrap().len(), 4);
    }
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after() {
    let server = server_answering_once_then(
        ResponseTemplate::new(429).insert_header("Retry-After", "1"),
        ResponseTemplate::new(202),
    )
    .await;
    let forwarder = forwarder(config_for(&server.uri()));
    let started = Instant::now();

    let result = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    assert_eq!(delivered(result).attempts, 2);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    // The retry waited for the whole second Memfault asked for, not the few ms of backoff.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_past_the_deadline_fails_at_once_for_lambda_to_retry_later() {
    let server =
        server_answering(ResponseTemplate::new(429).insert_header("Retry-After", "120")).await;
    let forwarder = forwarder(config_for(&server.uri()));
    let started = Instant::now();

    let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);

    assert_eq!(error.error_type(), "Retryable.UpstreamRateLimited");
    assert!(error.to_string().contains("asked to wait 120s"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_say_what_memfault_answered() {
    const CHUNK: &str = "Permanent.UpstreamRejected";
    const SETTING: &str = "Retryable.UpstreamConfiguration";
    for (status, body, meaning, error_type) in [
        (400, "malformed chunk", "malformed request", CHUNK),
        (
            403,
            "Invalid project key",
            "project key missing or invalid",
            SETTING,
        ),
        (404, "", "no such endpoint", SETTING),
        (413, "", "chunk too large", CHUNK),
        (415, "", "unsupported Content-Type", CHUNK),
    ] {
        let server = server_answering(ResponseTemplate::new(status).set_body_string(body)).await;
        let forwarder = forwarder(config_for(&server.uri()));

        let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);

        assert_eq!(error.error_type(), error_type, "{status}");
        let message = error.to_string();
        assert!(message.contains(&format!("HTTP {status}")), "{message}");
        assert!(
            message.contains(meaning) && message.contains(body),
            "{message}"
        );
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "{status}"
        );
    }
}

#[tokio::test]
async fn reset_connections_are_retried_then_reported() {
    let (uri, accepted) = resetting_server().await;
    let forwarder = forwarder(config_for(&uri));

    let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);

    assert_eq!(error.error_type(), "Retryable.UpstreamConnection");
    assert!(error.to_string().contains("connection failed"), "{error}");
    // Three configured attempts, plus the one immediate retry a broken connection earns.
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn nothing_listening_is_a_retryable_connect_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let forwarder = forwarder(config_for(&uri));

    let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);

    assert_eq!(error.error_type(), "Retryable.UpstreamConnect");
    assert!(error.to_string().contains("could not connect"), "{error}");
}

#[tokio::test]
async fn a_hanging_upstream_cannot_make_the_function_miss_its_deadline() {
    let server =
        server_answering(ResponseTemplate::new(202).set_delay(Duration::from_secs(60))).await;
    let mut config = config_for(&server.uri());
    config.set("MEMFAULT_REQUEST_TIMEOUT_MS", 30_000);
    config.set("MEMFAULT_DEADLINE_MARGIN_MS", 300);
    let forwarder = forwarder(config);
    let budget = Duration::from_millis(1_500);
    let started = Instant::now();

    let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), budget).await);

    let elapsed = started.elapsed();
    assert!(
        elapsed < budget,
        "answered after {elapsed:?}, budget {budget:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1_000),
        "gave up early: {elapsed:?}"
    );
    assert_eq!(error.error_type(), "Retryable.UpstreamTimeout");
}

#[tokio::test]
async fn per_request_timeout_leaves_room_for_another_attempt() {
    let server = server_answering_once_then(
        ResponseTemplate::new(202).set_delay(Duration::from_secs(60)),
        ResponseTemplate::new(202),
    )
    .await;
    let mut config = config_for(&server.uri());
    config.set("MEMFAULT_REQUEST_TIMEOUT_MS", 300);
    let forwarder = forwarder(config);

    let result = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    assert_eq!(delivered(result).attempts, 2);
}

#[tokio::test]
async fn no_time_left_means_no_request() {
    let server = accepting_server().await;
    let forwarder = forwarder(config_for(&server.uri()));

    let error = failed(invoke(&forwarder, sample_event("heartbeat.json"), Duration::ZERO).await);

    assert_eq!(error.error_type(), "Retryable.UpstreamDeadline");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn sequential_invocations_share_one_connection() {
    let server = accepting_server().await;
    let relay = Relay::start(*server.address()).await;
    let forwarder = forwarder(config_for(&relay.uri()));

    for _ in 0..20 {
        delivered(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);
    }

    assert_eq!(server.received_requests().await.unwrap().len(), 20);
    assert_eq!(relay.connections_opened(), 1);
}

#[tokio::test]
async fn a_connection_that_went_stale_between_invocations_does_not_lose_the_chunk() {
    let server = accepting_server().await;
    let relay = Relay::start(*server.address()).await;
    let mut config = config_for(&relay.uri());
    // Even with no retries configured, a dead pooled connection must not fail the chunk.
    config.set("MEMFAULT_MAX_ATTEMPTS", 1);
    let forwarder = forwarder(config);
    delivered(invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await);

    relay.make_open_connections_stale();
    let result = invoke(&forwarder, sample_event("heartbeat.json"), BUDGET).await;

    assert_eq!(delivered(result).attempts, 2);
    assert_eq!(relay.connections_opened(), 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn events_serde_json_cannot_turn_into_a_value_are_refused_as_invalid_events() {
    let server = accepting_server().await;
    let forwarder = forwarder(config_for(&server.uri()));
    let topic = "prod/b/TESTSERIAL/memfault/Key/chunk";
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let hostile = [
        format!(r#"{{"data": "AQ==", "topic": "{topic}", "extra": {deep}}}"#),
        format!(r#"{{"data": "AQ==", "topic": "{topic}\ud800"}}"#),
        format!(r#"{{"data": "AQ==", "topic": "{topic}", "n": 1e400}}"#),
        deep,
    ];

    for text in hostile {
        let payload = serde_json::value::RawValue::from_string(text.clone()).unwrap();
        let mut context = lambda_runtime::Context::default();
        context.deadline = 600_000;
        let result = forwarder
            .handle(lambda_runtime::LambdaEvent::new(payload, context))
            .await;
        let error = failed(result);
        assert_eq!(
            error.error_type(),
            "Permanent.InvalidEvent",
            "{text:.60}: {error}"
        );
        assert!(
            error.to_string().contains("event cannot be read"),
            "{error}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_event_is_a_batch_only_when_it_really_is_one() {
    let server = accepting_server().await;
    let forwarder = forwarder(config_for(&server.uri()));
    let mut event = sample_event("heartbeat.json");
    event["Records"] = json!([]);

    let answer = delivered(invoke(&forwarder, event, BUDGET).await);
    assert_eq!(answer.device_serial, "TESTSERIAL");

    let error = failed(invoke(&forwarder, json!({"Records": []}), BUDGET).await);
    assert_eq!(error.error_type(), "Permanent.InvalidEvent");
    assert!(error.to_string().contains("no \"topic\" field"), "{error}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn with_basic_ingest_a_topic_outside_the_pattern_is_refused_by_the_function() {
    // Basic Ingest bypasses the rule's FROM filter: whatever a device publishes under
    // $aws/rules/<rule>/ reaches the function, with the prefix stripped from topic().
    let server = accepting_server().await;
    let forwarder = forwarder(config_for(&server.uri()));
    for topic in [
        "prod/board/TESTSERIAL/telemetry/KEY/chunk",
        "anything/else",
        "prod/board/TESTSERIAL/memfault/KEY/chunk/extra",
    ] {
        let event = json!({"data": "CAKnAg==", "topic": topic});
        let error = failed(invoke(&forwarder, event, BUDGET).await);
        assert_eq!(error.error_type(), "Permanent.TopicMismatch", "{topic}");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}
