//! Logs and metrics.
//!
//! Logs go through `tracing`, formatted the way Lambda's advanced logging controls ask
//! (`AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`). Metrics are CloudWatch Embedded Metric
//! Format documents printed on stdout, which CloudWatch Logs turns into metrics without any API
//! call from the function.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::tracing::subscriber::EnvFilter;
use lambda_runtime::tracing::subscriber::filter::LevelFilter;
use serde_json::{Value, json};

/// The runtime logs every raw event at TRACE, and a raw event carries the project key in its
/// topic. That one target is held at DEBUG whatever the level, so no key reaches the logs whole.
const RAW_EVENT_TARGET_CAP: &str = "lambda_runtime::layers::api_response=debug";

/// Installs the global subscriber: JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`, text otherwise; level
/// from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO.
pub fn init_logging() {
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = log_filter(&level);
    let builder = lambda_runtime::tracing::subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    if json {
        // Flat lines query well in CloudWatch Logs Insights; the current span carries the
        // runtime's requestId, which ties every line to its invocation.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// Lambda's level names (`TRACE` … `FATAL`) and `RUST_LOG` directives both work; anything that
/// cannot be read falls back to INFO.
fn log_filter(level: &str) -> EnvFilter {
    let level = match level.trim().to_ascii_lowercase().as_str() {
        "fatal" => "error".to_owned(),
        // Directives never hold white space; a stray phrase would silence every log line.
        "" => "info".to_owned(),
        other if other.contains(char::is_whitespace) => "info".to_owned(),
        other => other.to_owned(),
    };
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(&level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    filter.add_directive(
        RAW_EVENT_TARGET_CAP
            .parse()
            .expect("the raw event cap is a valid directive"),
    )
}

/// Counters for one invocation, turned into EMF documents when it ends.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct InvocationMetrics {
    pub chunks_forwarded: u64,
    pub bytes_forwarded: u64,
    pub upstream_requests: u64,
    pub refusals: u64,
    pub retries: u64,
    pub upstream_latency_ms: Vec<f64>,
    pub failures_by_class: BTreeMap<&'static str, u64>,
    /// Chunks left to a retry by the event source: batch item failures, or a failed invocation.
    pub chunks_undelivered: u64,
    /// Stream records written to the failure queue as undeliverable.
    pub chunks_quarantined: u64,
}

impl InvocationMetrics {
    pub fn record_latency(&mut self, latency: Duration) {
        self.upstream_latency_ms
            .push((latency.as_secs_f64() * 1_000.0 * 1_000.0).round() / 1_000.0);
    }

    pub fn record_failure(&mut self, class: &'static str) {
        *self.failures_by_class.entry(class).or_default() += 1;
    }

    pub fn merge(&mut self, part: InvocationMetrics) {
        self.chunks_forwarded += part.chunks_forwarded;
        self.bytes_forwarded += part.bytes_forwarded;
        self.upstream_requests += part.upstream_requests;
        self.refusals += part.refusals;
        self.retries += part.retries;
        self.chunks_undelivered += part.chunks_undelivered;
        self.chunks_quarantined += part.chunks_quarantined;
        self.upstream_latency_ms.extend(part.upstream_latency_ms);
        for (class, count) in part.failures_by_class {
            *self.failures_by_class.entry(class).or_default() += count;
        }
    }
}

/// The EMF documents for one invocation: totals with the `Mode` dimension, then one document per
/// upstream failure class with `Mode` and `FailureClass`.
pub fn emf_documents(
    namespace: &str,
    mode: &str,
    metrics: &InvocationMetrics,
    timestamp_ms: u64,
) -> Vec<Value> {
    let mut totals = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Mode"]],
                "Metrics": [
                    {"Name": "ChunksForwarded", "Unit": "Count"},
                    {"Name": "BytesForwarded", "Unit": "Bytes"},
                    {"Name": "UpstreamRequests", "Unit": "Count"},
                    {"Name": "Refusals", "Unit": "Count"},
                    {"Name": "Retries", "Unit": "Count"},
                    {"Name": "ChunksUndelivered", "Unit": "Count"},
                    {"Name": "ChunksQuarantined", "Unit": "Count"}
                ]
            }]
        },
        "Mode": mode,
        "ChunksForwarded": metrics.chunks_forwarded,
        "BytesForwarded": metrics.bytes_forwarded,
        "UpstreamRequests": metrics.upstream_requests,
        "Refusals": metrics.refusals,
        "Retries": metrics.retries,
        "ChunksUndelivered": metrics.chunks_undelivered,
        "ChunksQuarantined": metrics.chunks_quarantined,
    });
    // Declared only when there are values: a declared metric with no member is an invalid document.
    if !metrics.upstream_latency_ms.is_empty() {
        totals["UpstreamLatency"] = json!(metrics.upstream_latency_ms);
        if let Some(declared) = totals["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array_mut() {
            declared.push(json!({"Name": "UpstreamLatency", "Unit": "Milliseconds"}));
        }
    }
    let mut documents = vec![totals];
    for (class, count) in &metrics.failures_by_class {
        documents.push(json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": namespace,
                    "Dimensions": [["Mode", "FailureClass"]],
                    "Metrics": [{"Name": "UpstreamFailures", "Unit": "Count"}]
                }]
            },
            "Mode": mode,
            "FailureClass": class,
            "UpstreamFailures": count,
        }));
    }
    documents
}

/// Writes the documents to stdout, one line each, as CloudWatch's EMF parser expects.
pub fn emit_metrics(namespace: Option<&str>, mode: &str, metrics: &InvocationMetrics) {
    let Some(namespace) = namespace else {
        return;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64);
    let mut lines = String::new();
    for document in emf_documents(namespace, mode, metrics, now_ms) {
        lines.push_str(&document.to_string());
        lines.push('\n');
    }
    // One write keeps the documents whole when log lines are written from elsewhere too.
    let _ = std::io::stdout().lock().write_all(lines.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_document_declares_every_metric_it_carries() {
        let mut metrics = InvocationMetrics {
            chunks_forwarded: 3,
            bytes_forwarded: 120,
            upstream_requests: 2,
            refusals: 1,
            retries: 1,
            ..Default::default()
        };
        metrics.record_latency(Duration::from_micros(12_345));
        let documents = emf_documents("Ns", "Queued", &metrics, 1_700_000_000_000);
        assert_eq!(documents.len(), 1);
        let totals = &documents[0];
        let declared = &totals["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], "Ns");
        assert_eq!(totals["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let metrics_declared = declared["Metrics"].as_array().unwrap();
        assert_eq!(metrics_declared.len(), 8);
        for metric in metrics_declared {
            let name = metric["Name"].as_str().unwrap();
            assert!(!totals[name].is_null(), "{name} is declared but missing");
        }
        assert_eq!(totals["Mode"], "Queued");
        assert_eq!(totals["ChunksForwarded"], 3);
        assert_eq!(totals["UpstreamLatency"], json!([12.345]));
    }

    #[test]
    fn each_failure_class_gets_its_own_dimension_value() {
        let mut metrics = InvocationMetrics::default();
        metrics.record_failure("ServerError");
        metrics.record_failure("ServerError");
        metrics.record_failure("Timeout");
        let documents = emf_documents("Ns", "Direct", &metrics, 0);
        assert_eq!(documents.len(), 3);
        assert!(documents[0].get("UpstreamLatency").is_none());
        let declared = documents[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"].to_string();
        assert!(!declared.contains("UpstreamLatency"), "{declared}");
        assert_eq!(documents[1]["FailureClass"], "ServerError");
        assert_eq!(documents[1]["UpstreamFailures"], 2);
        assert_eq!(documents[2]["FailureClass"], "Timeout");
        assert_eq!(
            documents[2]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Mode", "FailureClass"]])
        );
    }

    #[test]
    fn lambda_level_names_map_to_filters() {
        for (input, expected) in [
            ("", "info"),
            ("WARN", "warn"),
            ("FATAL", "error"),
            ("debug", "debug"),
            ("memfault_chunk_proxy=trace", "memfault_chunk_proxy=trace"),
            ("not a level!!", "info"),
        ] {
            let filter = log_filter(input).to_string();
            let directives: Vec<&str> = filter.split(',').collect();
            assert!(directives.contains(&expected), "{input:?}: {filter}");
            assert!(
                directives.contains(&RAW_EVENT_TARGET_CAP),
                "{input:?}: {filter}"
            );
        }
    }
}
