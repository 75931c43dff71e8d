//! Runs the function's handler on sample events, on this machine, with no AWS account.
//!
//! Without `MEMFAULT_CHUNKS_URL` the chunks go to a receiver on loopback that answers like
//! Memfault (202) and shows what it got, so nothing leaves the machine. With
//! `MEMFAULT_CHUNKS_URL=https://chunks.memfault.com` and `MEMFAULT_PROJECT_KEY` set, the same
//! command forwards to Memfault for real; the key then also replaces the sample events'
//! placeholder key `YOUR_PROJECT_KEY` so that the topic names the same project.
//!
//! A sample that needs settings other than the defaults carries them beside it:
//! `events/NAME.env` for `events/NAME.json`, `KEY=VALUE` lines (`#` starts a comment). The
//! environment wins over the file, so a setting can still be tried out on any sample.
//!
//! The function's CloudWatch metric documents (EMF, one long JSON line per invocation) are left
//! out unless `VERBOSE=1`: they are for CloudWatch, not for a person reading the run.
//!
//! Usage:
//!   cargo run --example local -- [EVENT.json ...]   (default: events/heartbeat.json)
//!   cargo run --example local -- --receive ADDRESS   (only the receiver, on ADDRESS, printing
//!                                                     each request as it arrives: `make watch`)

// The integration tests' reader of multipart bodies, so that what this shows is what they check.
#[path = "../tests/integration/support/multipart.rs"]
mod multipart;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use memfault_chunk_proxy::init_logging;
use memfault_chunk_proxy::redact;
use memfault_chunk_proxy::{Config, Forwarder, KeySource};
use serde_json::value::RawValue;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const PLACEHOLDER_KEY: &str = "YOUR_PROJECT_KEY";
const INVOCATION_BUDGET: Duration = Duration::from_secs(30);
/// Enough of a chunk to recognise it (Memfault's chunk header, a serial) on one line.
const PREVIEW_BYTES: usize = 24;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, address] = args.as_slice()
        && flag == "--receive"
    {
        return receive(address).await;
    }
    init_logging();
    let files = if args.is_empty() {
        vec!["events/heartbeat.json".to_owned()]
    } else {
        args
    };
    let verbose = std::env::var("VERBOSE").is_ok_and(|value| value == "1");

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
    if !verbose {
        println!("Metric documents (EMF) are not shown: VERBOSE=1 shows them.");
    }

    let mut all_succeeded = true;
    for file in &files {
        println!("\n== {file}");
        let settings = match sidecar(file) {
            Ok(settings) => settings,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        };
        for (name, value) in &settings {
            match std::env::var(name) {
                Ok(_) => println!("(settings file: {name} is set in the environment, which wins)"),
                Err(_) => println!("(settings file: {name}={value})"),
            }
        }
        let receiver_url = receiver.as_ref().map(MockServer::uri);
        // A shell may export MEMFAULT_ variables for other tools (the Memfault CLI): those are
        // only named here. A settings file is the function's environment: refused, as in Lambda.
        let shell = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
        if let Err(error) = Config::check_names(shell) {
            println!("(warning, the deployed function refuses this at init: {error})");
        }
        let config = Config::check_names(settings.keys().cloned()).and_then(|()| {
            Config::from_lookup(|name| match (name, &receiver_url) {
                ("MEMFAULT_CHUNKS_URL", Some(url)) => Some(url.clone()),
                _ => match std::env::var(name) {
                    Ok(value) => Some(value),
                    // An empty namespace is the function's own switch for "no metrics".
                    Err(_) if name == "MEMFAULT_METRICS_NAMESPACE" && !verbose => {
                        Some(String::new())
                    }
                    Err(_) => settings.get(name).cloned(),
                },
            })
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
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("{file}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let text = match forwarder.config().router().key_source() {
            KeySource::Fixed(key) => text.replace(PLACEHOLDER_KEY, key.expose()),
            _ => text,
        };
        let payload = match RawValue::from_string(text) {
            Ok(payload) => payload,
            Err(error) => {
                eprintln!("{file}: not JSON: {error}");
                return ExitCode::FAILURE;
            }
        };
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
                if let Some(hint) = settings_hint(&diagnostic.error_type, file, &settings) {
                    println!("{hint}");
                }
            }
        }
    }

    if let Some(server) = receiver {
        let requests = server.received_requests().await.unwrap_or_default();
        println!(
            "\n== what would have reached Memfault: {} request(s)",
            requests.len()
        );
        for request in &requests {
            print!("{}", describe(request));
        }
    }
    if all_succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The receiver alone, for a function run elsewhere (`make watch` starts one for cargo lambda's
/// emulator): answers 202 and prints each request as it arrives, until stopped.
async fn receive(address: &str) -> ExitCode {
    let listener = match std::net::TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let server = MockServer::builder().listener(listener).start().await;
    Mock::given(method("POST"))
        .respond_with(PrintAndAccept)
        .mount(&server)
        .await;
    println!(
        "Local receiver at {} answers 202 like Memfault and prints what it receives.",
        server.uri()
    );
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}

struct PrintAndAccept;

impl Respond for PrintAndAccept {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        print!("\n== received by the local receiver\n{}", describe(request));
        ResponseTemplate::new(202)
    }
}

/// `events/NAME.env` beside `events/NAME.json`, when there is one.
fn sidecar(event_file: &str) -> Result<BTreeMap<String, String>, String> {
    let path = Path::new(event_file).with_extension("env");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let mut settings = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "{} line {}: expected KEY=VALUE, found {line:?}",
                path.display(),
                number + 1
            ));
        };
        settings.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(settings)
}

/// Refusals a setting can cure say which one, and where a sample keeps its settings.
fn settings_hint(
    error_type: &str,
    event_file: &str,
    settings: &BTreeMap<String, String>,
) -> Option<String> {
    let variable = match error_type.rsplit('.').next()? {
        "TopicMismatch" => "MEMFAULT_TOPIC_PATTERN",
        "NoProjectKey" | "ProjectKeyMismatch" => "MEMFAULT_PROJECT_KEY",
        _ => return None,
    };
    let current = std::env::var(variable)
        .ok()
        .or_else(|| settings.get(variable).cloned())
        .map_or_else(
            || "not set (its default)".to_owned(),
            |value| format!("{value:?}"),
        );
    Some(format!(
        "This may be a setting, not the event: {variable} is {current}. To run this sample with \
         another value, put {variable}=... in {} (read by `make local`, `make watch` and the \
         emulator test) or set it in the environment; docs/configuration.md describes it.",
        Path::new(event_file).with_extension("env").display()
    ))
}

/// One request as a person reads it: headers (the project key shortened), then the body, a
/// multipart body as its parts.
fn describe(request: &Request) -> String {
    let mut text = format!("{} {}\n", request.method, request.url.path());
    for (name, value) in &request.headers {
        let value = value.to_str().unwrap_or("<binary>");
        let shown = if name.as_str().eq_ignore_ascii_case("memfault-project-key") {
            redact(value)
        } else {
            value.to_owned()
        };
        text += &format!("  {name}: {shown}\n");
    }
    let content_type = request
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    match multipart::read_parts(content_type, &request.body, |_| ()) {
        Ok(parts) => {
            text += &format!(
                "  body ({} bytes): {} parts\n",
                request.body.len(),
                parts.len()
            );
            for (index, ((), part)) in parts.iter().enumerate() {
                text += &format!(
                    "    part {} ({} bytes): {}\n",
                    index + 1,
                    part.len(),
                    preview(part)
                );
            }
        }
        // Not multipart, or not a body multer can read: shown as it is.
        Err(_) => {
            text += &format!(
                "  body ({} bytes): {}\n",
                request.body.len(),
                preview(&request.body)
            )
        }
    }
    text
}

/// The first bytes in hex and as ASCII (`.` for the rest), `…` when there is more.
fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(PREVIEW_BYTES)];
    let hex: String = shown.iter().map(|byte| format!("{byte:02x}")).collect();
    let ascii: String = shown
        .iter()
        .map(|&byte| {
            if byte.is_ascii_graphic() {
                byte as char
            } else {
                '.'
            }
        })
        .collect();
    let more = if bytes.len() > shown.len() { "…" } else { "" };
    format!("{hex}{more}  |{ascii}{more}|")
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
