//! The built binary as Lambda runs it: init from the environment, the Runtime API loop, logs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::*;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BINARY: &str = env!("CARGO_BIN_EXE_memfault-chunk-proxy");
const NEXT: &str = "/2018-06-01/runtime/invocation/next";

pub(crate) fn lambda_command(runtime_api: &MockServer) -> Command {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api.address().to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "memfault-chunk-proxy")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A Runtime API that hands out `event` (JSON text) once, then keeps the next long poll waiting.
pub(crate) async fn runtime_api_serving(event: String) -> MockServer {
    runtime_api_serving_within(event, Duration::from_secs(30)).await
}

/// The same, with `budget` until the invocation's deadline.
async fn runtime_api_serving_within(event: String, budget: Duration) -> MockServer {
    let server = MockServer::start().await;
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + budget;
    Mock::given(method("GET"))
        .and(path(NEXT))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Lambda-Runtime-Aws-Request-Id", "request-1")
                .insert_header(
                    "Lambda-Runtime-Deadline-Ms",
                    deadline.as_millis().to_string(),
                )
                .insert_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:eu-west-1:123456789012:function:memfault-chunk-proxy",
                )
                .set_body_raw(event, "application/json"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(NEXT))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3600)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            "^/2018-06-01/runtime/invocation/request-1/(response|error)$",
        ))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

/// Waits until the function has posted its answer for request-1, and returns path and body.
pub(crate) async fn answer(runtime_api: &MockServer) -> (String, serde_json::Value) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let requests = runtime_api.received_requests().await.unwrap();
        if let Some(posted) = requests
            .iter()
            .find(|request| request.method.as_str() == "POST")
        {
            let body = serde_json::from_slice(&posted.body).unwrap();
            return (posted.url.path().to_owned(), body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the function posted no answer");
}

/// What the function posted for request-1 and printed, run on the sample heartbeat.
struct Run {
    path: String,
    body: serde_json::Value,
    stdout: String,
}

/// Runs the function on the sample heartbeat against `memfault`, with JSON logs at TRACE and
/// `env`, and checks that nothing it printed holds the project key.
async fn run_heartbeat_at_trace(memfault: &MockServer, env: &[(&str, &str)]) -> Run {
    run_at_trace(
        sample_event("heartbeat.json").to_string(),
        memfault,
        env,
        &[],
    )
    .await
}

/// Runs the function on `event` against `memfault`, with JSON logs at TRACE (the most verbose
/// level, at which the runtime would print raw events) and `env`, and checks that nothing it
/// printed holds the project key or any of `secrets`.
async fn run_at_trace(
    event: String,
    memfault: &MockServer,
    env: &[(&str, &str)],
    secrets: &[&str],
) -> Run {
    let runtime_api = runtime_api_serving(event).await;
    let mut child = lambda_command(&runtime_api)
        .env("MEMFAULT_CHUNKS_URL", memfault.uri())
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "TRACE")
        .envs(env.iter().copied())
        .spawn()
        .unwrap();

    let (path, body) = answer(&runtime_api).await;
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();

    let stdout = String::from_utf8(output.stdout).unwrap();
    let everything = stdout.clone() + &String::from_utf8_lossy(&output.stderr);
    for secret in std::iter::once(SAMPLE_KEY).chain(secrets.iter().copied()) {
        assert!(
            !everything.contains(secret),
            "{secret} leaked:\n{everything}"
        );
    }
    Run { path, body, stdout }
}

#[tokio::test]
async fn serves_an_invocation_through_the_runtime_api_without_leaking_the_key() {
    let memfault = server_answering(ResponseTemplate::new(202)).await;

    let run = run_heartbeat_at_trace(&memfault, &[]).await;

    assert_eq!(
        run.path,
        "/2018-06-01/runtime/invocation/request-1/response"
    );
    assert_eq!(run.body["status"], 202);
    assert_eq!(memfault.received_requests().await.unwrap().len(), 1);
    let outcome = run
        .stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["outcome"] == "delivered")
        .unwrap_or_else(|| panic!("no outcome line in:\n{}", run.stdout));
    assert_eq!(outcome["device_serial"], "TESTSERIAL");
    assert_eq!(outcome["bytes"], 87);
    assert_eq!(outcome["span"]["requestId"], "request-1");
}

#[tokio::test]
async fn a_failed_chunk_is_reported_to_lambda_with_its_error_type() {
    let memfault = server_answering(ResponseTemplate::new(403)).await;
    let runtime_api = runtime_api_serving(sample_event("heartbeat.json").to_string()).await;
    let mut child = lambda_command(&runtime_api)
        .env("MEMFAULT_CHUNKS_URL", memfault.uri())
        .spawn()
        .unwrap();

    let (path, body) = answer(&runtime_api).await;
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(path, "/2018-06-01/runtime/invocation/request-1/error");
    // A refused key is a setting to fix, not a bad chunk: Lambda keeps the event for its retries.
    assert_eq!(body["errorType"], "Retryable.UpstreamConfiguration");
    assert!(
        body["errorMessage"].as_str().unwrap().contains("HTTP 403"),
        "{body}"
    );
}

#[tokio::test]
async fn a_key_echoed_by_the_upstream_reaches_neither_lambda_nor_any_log_line() {
    let memfault = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EchoHeaders(503))
        .mount(&memfault)
        .await;

    // Two attempts: the DEBUG "retrying upload" line quotes the failure too.
    let env = [
        ("MEMFAULT_MAX_ATTEMPTS", "2"),
        ("MEMFAULT_RETRY_BASE_DELAY_MS", "1"),
    ];
    let run = run_heartbeat_at_trace(&memfault, &env).await;

    assert_eq!(run.path, "/2018-06-01/runtime/invocation/request-1/error");
    assert_eq!(memfault.received_requests().await.unwrap().len(), 2);
    let message = run.body["errorMessage"].as_str().unwrap();
    // The echo is shown, with the key in it redacted.
    assert!(message.contains("memfault-project-key: YOUR…"), "{message}");
    assert!(!message.contains(SAMPLE_KEY), "{message}");
    assert!(run.stdout.contains("retrying upload"), "{}", run.stdout);
}

pub(crate) const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";

/// A Runtime API that takes init errors after `delay`, and hands out no invocation.
pub(crate) async fn runtime_api_taking_init_errors(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INIT_ERROR))
        .respond_with(ResponseTemplate::new(202).set_delay(delay))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn a_bad_configuration_is_reported_to_lambda_without_secrets_and_stops_init() {
    let key = "0123456789abcdef0123456789abcdef";
    for (variable, value, problem, secret) in [
        (
            "MEMFAULT_TOPIC_PATTERN",
            format!("prod/+/memfault/{key}/#"),
            "has no {device_serial} level",
            key,
        ),
        (
            "MEMFAULT_CHUNKS_URL",
            "https://proxyuser:S3cretPassw0rd@chunks.example/?token=T0ken".to_owned(),
            "must not carry credentials",
            "S3cretPassw0rd",
        ),
        (
            "MEMFAULT_PROJECT_KEYS",
            format!("project-a={key}"),
            "MEMFAULT_TOPIC_PATTERN has no {project_slug} level",
            key,
        ),
        // An upgraded deployment would run without its quarantine queue.
        (
            "MEMFAULT_FAILURE_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/123456789012/Qu4rantine.fifo".to_owned(),
            "was renamed MEMFAULT_QUARANTINE_QUEUE_URL in 0.1.0",
            "Qu4rantine",
        ),
        // A typo would send every chunk with the key its topic names, or none.
        (
            "MEMFAULT_PROJET_KEY",
            key.to_owned(),
            "did you mean MEMFAULT_PROJECT_KEY?",
            &key[..4],
        ),
    ] {
        let runtime_api = runtime_api_taking_init_errors(Duration::ZERO).await;
        let output = lambda_command(&runtime_api)
            .env(variable, &value)
            .output()
            .unwrap();

        assert!(!output.status.success());
        let requests = runtime_api.received_requests().await.unwrap();
        assert_eq!(requests.len(), 1, "only the init error, no invocation");
        let request = &requests[0];
        assert_eq!(request.url.path(), INIT_ERROR);
        assert_eq!(
            request.headers["lambda-runtime-function-error-type"],
            "Runtime.ConfigInvalid"
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["errorType"], "Runtime.ConfigInvalid");
        let message = body["errorMessage"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("invalid configuration: {variable}=")),
            "{message}"
        );
        assert!(message.contains(problem), "{message}");
        let printed =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        assert!(printed.contains(problem), "{printed}");
        for text in [message, &printed] {
            assert!(!text.contains(secret), "{variable}: {text}");
        }
    }
}

#[tokio::test]
async fn a_runtime_api_that_does_not_answer_cannot_hold_a_failed_init() {
    let runtime_api = runtime_api_taking_init_errors(Duration::from_secs(60)).await;
    let started = Instant::now();

    let output = lambda_command(&runtime_api)
        .env("MEMFAULT_MAX_ATTEMPTS", "0")
        .output()
        .unwrap();

    assert!(!output.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(runtime_api.received_requests().await.unwrap().len(), 1);
}

/// The JSON lines a run printed.
/// Runs the binary on one `event` against `memfault`, with JSON logs and `env`, and returns
/// every JSON line it wrote.
pub(crate) async fn json_lines_of_one_invocation(
    event: serde_json::Value,
    memfault: &MockServer,
    env: &[(&str, &str)],
) -> Vec<serde_json::Value> {
    let runtime_api = runtime_api_serving(event.to_string()).await;
    let mut child = lambda_command(&runtime_api)
        .env("MEMFAULT_CHUNKS_URL", memfault.uri())
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    answer(&runtime_api).await;
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    json_lines(&String::from_utf8(output.stdout).unwrap())
}

pub(crate) fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[tokio::test]
async fn events_the_runtime_cannot_deserialize_are_refused_counted_and_logged() {
    let memfault = server_answering(ResponseTemplate::new(202)).await;
    let topic = "prod/b/TESTSERIAL/memfault/YOUR_PROJECT_KEY/chunk";
    let deep = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
    for event in [
        format!(r#"{{"data": "AQ==", "topic": "{topic}", "nested": {deep}}}"#),
        format!(r#"{{"data": "AQ==", "topic": "{topic}\udc00"}}"#),
        format!(r#"{{"data": "AQ==", "topic": "{topic}", "n": -1e999}}"#),
    ] {
        let run = run_at_trace(event.clone(), &memfault, &[], &[]).await;

        assert_eq!(
            run.path, "/2018-06-01/runtime/invocation/request-1/error",
            "{event:.80}"
        );
        assert_eq!(
            run.body["errorType"], "Permanent.InvalidEvent",
            "{}",
            run.body
        );
        let lines = json_lines(&run.stdout);
        assert!(
            lines.iter().any(|line| line["outcome"] == "refused"
                && line["error_type"] == "Permanent.InvalidEvent"),
            "no refusal line:\n{}",
            run.stdout
        );
        assert!(
            lines
                .iter()
                .any(|line| line["Refusals"] == 1 && line["Mode"] == "Direct"),
            "no refusal counted:\n{}",
            run.stdout
        );
    }
    assert!(memfault.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn stream_mode_leaks_neither_the_key_nor_the_credentials_at_trace() {
    let memfault = server_answering(ResponseTemplate::new(202)).await;
    let queue = server_answering(ResponseTemplate::new(200).set_body_string("{}")).await;
    let (secret, token) = (
        "wJalrXUtnFEMIK7MDENGbPxRfiCYSECRETKEY",
        "IQoJb3JpZ2luX2VjSESSIONTOKEN",
    );
    let env = [
        (
            "MEMFAULT_QUARANTINE_QUEUE_URL",
            &*format!("{}/123456789012/failures", queue.uri()),
        ),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", token),
    ];

    let event = sample_event("kinesis-batch.json").to_string();
    let run = run_at_trace(event, &memfault, &env, &[secret, token]).await;

    assert_eq!(
        run.path,
        "/2018-06-01/runtime/invocation/request-1/response"
    );
    assert_eq!(run.body, serde_json::json!({"batchItemFailures": []}));
    assert_eq!(memfault.received_requests().await.unwrap().len(), 2);
    let written = queue.received_requests().await.unwrap();
    assert_eq!(
        written.len(),
        1,
        "the bad record goes to the quarantine queue"
    );
    let lines = json_lines(&run.stdout);
    assert!(
        lines.iter().any(|line| line["outcome"] == "quarantined"),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|line| line["Mode"] == "Stream" && line["ChunksQuarantined"] == 1),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn uploads_the_deadline_leaves_no_time_for_get_one_line_between_them() {
    let memfault = server_answering(ResponseTemplate::new(202)).await;
    let records: Vec<serde_json::Value> = (0..300)
        .map(|device| {
            let event = chunk_event(&format!("D{device}"), "Key", b"chunk");
            kinesis_record(&(1_000 + device).to_string(), event.to_string().as_bytes())
        })
        .collect();
    // Less time than the default 500 ms margin: nothing may be started.
    let event = batch(records).to_string();
    let runtime_api = runtime_api_serving_within(event, Duration::from_millis(300)).await;
    let mut child = lambda_command(&runtime_api)
        .env("MEMFAULT_CHUNKS_URL", memfault.uri())
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .spawn()
        .unwrap();

    let (path, body) = answer(&runtime_api).await;
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();

    assert_eq!(path, "/2018-06-01/runtime/invocation/request-1/response");
    assert_eq!(body["batchItemFailures"].as_array().unwrap().len(), 300);
    assert!(memfault.received_requests().await.unwrap().is_empty());
    let lines = json_lines(&String::from_utf8(output.stdout).unwrap());
    let not_started: Vec<_> = lines
        .iter()
        .filter(|line| line["outcome"] == "not_started" && line["reason"] == "Deadline")
        .collect();
    assert_eq!(not_started.len(), 1, "{not_started:?}");
    assert_eq!(not_started[0]["devices"], 300);
    assert_eq!(not_started[0]["chunks"], 300);
}

#[tokio::test]
async fn a_batch_logs_its_deliveries_in_one_summary_line_at_info() {
    let memfault = server_answering(ResponseTemplate::new(202)).await;

    let lines =
        json_lines_of_one_invocation(sample_event("kinesis-batch.json"), &memfault, &[]).await;

    let outcomes: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["outcome"].as_str())
        .collect();
    // Two devices delivered, one record refused: the refusal has its own line, the deliveries
    // only the batch's.
    assert_eq!(outcomes, ["refused", "batch"], "{lines:?}");
    let batch = lines
        .iter()
        .find(|line| line["outcome"] == "batch")
        .unwrap();
    assert_eq!(batch["chunks_forwarded"], 4);
    assert!(batch["slowest_upstream_ms"].is_u64(), "{batch}");
    let sample = sample_event("kinesis-batch.json");
    let sequence_numbers: Vec<&str> = sample["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["kinesis"]["sequenceNumber"].as_str().unwrap())
        .collect();
    assert!(
        sequence_numbers.contains(&batch["slowest_item_id"].as_str().unwrap()),
        "{batch}"
    );
}

/// Memfault's current layout with two projects, at TRACE: each project's chunks reach Memfault
/// with their own key, a slug the map does not list is refused, and neither key is printed.
#[tokio::test]
async fn the_guide_layout_sends_each_project_its_key_and_prints_none_at_trace() {
    let (key_a, key_b) = (
        "aaaa0000bbbb1111cccc2222dddd3333",
        "eeee4444ffff5555aaaa6666bbbb7777",
    );
    let keys = format!("project-a={key_a},project-b={key_b}");
    let env = [
        (
            "MEMFAULT_TOPIC_PATTERN",
            "memfault/{project_slug}/{device_serial}/chunks",
        ),
        ("MEMFAULT_PROJECT_KEYS", keys.as_str()),
    ];

    let memfault = server_answering(ResponseTemplate::new(202)).await;
    let event = sample_event("guide/sqs-batch.json").to_string();
    let run = run_at_trace(event, &memfault, &env, &[key_a, key_b]).await;
    assert_eq!(run.body, serde_json::json!({"batchItemFailures": []}));
    let mut sent: Vec<(String, String)> = memfault
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| {
            let key = request.headers["memfault-project-key"].to_str().unwrap();
            (request.url.path().to_owned(), key.to_owned())
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            ("/api/v0/chunks/DEVICE-A1".to_owned(), key_a.to_owned()),
            ("/api/v0/chunks/DEVICE-B1".to_owned(), key_b.to_owned()),
        ]
    );

    let memfault = server_answering(ResponseTemplate::new(202)).await;
    let event = sample_event("guide/unknown-project.json").to_string();
    let run = run_at_trace(event, &memfault, &env, &[key_a, key_b]).await;
    assert_eq!(run.body["errorType"], "Permanent.UnknownProject");
    assert!(memfault.received_requests().await.unwrap().is_empty());
    let refused = json_lines(&run.stdout)
        .into_iter()
        .find(|line| line["outcome"] == "refused")
        .unwrap_or_else(|| panic!("no refusal line in:\n{}", run.stdout));
    assert_eq!(refused["error_type"], "Permanent.UnknownProject");
    // The project is unknown, the device is not: the line names it for the saved queries.
    assert_eq!(refused["device_serial"], "DEVICE-C1");
}
