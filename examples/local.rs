//! Runs the function's handler on sample events, on this machine, with no AWS account.
//!
//! Without `MEMFAULT_CHUNKS_URL` the chunks go to a receiver on loopback that answers like
//! Memfault (202) and shows what it got, so nothing leaves the machine. With
//! `MEMFAULT_CHUNKS_URL=https://chunks.memfault.com` and `MEMFAULT_PROJECT_KEY` set, the same
//! command forwards to Memfault for real; the key then also replaces the sample events'
//! placeholder key `YOUR_PROJECT_KEY` so that the topic names the same project.
//!
//! Usage: cargo run --example local -- [EVENT.json ...]   (default: events/heartbeat.json)

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use memfault_chunk_proxy::observability::init_logging;
use memfault_chunk_proxy::redact::redact;
use memfault_chunk_proxy::{Config, Forwarder};
use serde_json::value::RawValue;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const PLACEHOLDER_KEY: &str = "YOUR_PROJECT_KEY";
const INVOCATION_BUDGET: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    init_logging();
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        files.push("events/heartbeat.json".into());
    }

    let receiver = match std::env::var("MEMFAULT_CHUNKS_URL") {
        Ok(url) => {
            println!("Forwarding to {url} (MEMFAULT_CHUNKS_URL).");
            None
        }
        Err(_) => {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(202))
                .mount(&server)
                .await;
            println!(
                "MEMFAULT_CHUNKS_URL is not set: forwarding to a local receiver at {} that answers 202 like Memfault.",
                server.uri()
            );
            Some(server)
        }
    };
    let receiver_url = receiver.as_ref().map(MockServer::uri);
    let config = Config::from_lookup(|name| match (name, &receiver_url) {
        ("MEMFAULT_CHUNKS_URL", Some(url)) => Some(url.clone()),
        _ => std::env::var(name).ok(),
    });
    let forwarder = match config
        .map_err(|e| e.to_string())
        .and_then(|config| Forwarder::new(config).map_err(|e| e.to_string()))
    {
        Ok(forwarder) => forwarder,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let real_key = forwarder
        .config()
        .project_key
        .as_ref()
        .map(|key| key.expose().to_owned());

    let mut all_succeeded = true;
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("{file}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let text = match &real_key {
            Some(key) => text.replace(PLACEHOLDER_KEY, key),
            None => text,
        };
        let payload = match RawValue::from_string(text) {
            Ok(payload) => payload,
            Err(error) => {
                eprintln!("{file}: not JSON: {error}");
                return ExitCode::FAILURE;
            }
        };
        println!("\n== {file}");
        match forwarder.handle(LambdaEvent::new(payload, context())).await {
            Ok(response) => println!(
                "function returned: {}",
                serde_json::to_string_pretty(&response).unwrap_or_default()
            ),
            Err(error) => {
                all_succeeded = false;
                let diagnostic = Diagnostic::from(error);
                println!(
                    "function failed: errorType={} errorMessage={}",
                    diagnostic.error_type, diagnostic.error_message
                );
            }
        }
    }

    if let Some(server) = receiver {
        let requests = server.received_requests().await.unwrap_or_default();
        println!(
            "\n== what would have reached Memfault: {} request(s)",
            requests.len()
        );
        for request in requests {
            println!("{} {}", request.method, request.url.path());
            for (name, value) in &request.headers {
                let value = value.to_str().unwrap_or("<binary>");
                let shown = if name.as_str().eq_ignore_ascii_case("memfault-project-key") {
                    redact(value)
                } else {
                    value.to_owned()
                };
                println!("  {name}: {shown}");
            }
            println!(
                "  body ({} bytes): {}",
                request.body.len(),
                hex(&request.body)
            );
        }
    }
    if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn context() -> Context {
    let mut context = Context::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    context.deadline = (now + INVOCATION_BUDGET).as_millis() as u64;
    context.request_id = "local-invocation".into();
    context
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
