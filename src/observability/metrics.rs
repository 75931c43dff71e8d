//! CloudWatch Embedded Metric Format documents, one set per invocation.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::source_kind::SourceKind;

/// Declares the function's counters, each once: its field in [`InvocationMetrics`], its metric
/// name and unit in the EMF documents, and what it counts. The documents, the merging of shares
/// and the check of the docs' and the template's metric names all read this one list.
macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident => $name:literal, $unit:literal;)*) => {
        /// Counters for one invocation, turned into EMF documents when it ends.
        #[derive(Debug, Default, Clone, PartialEq)]
        pub struct InvocationMetrics {
            $($(#[$doc])* pub $field: u64,)*
            pub upstream_latency_ms: Vec<f64>,
            pub failures_by_class: BTreeMap<&'static str, u64>,
        }

        /// Every counter: its metric name, its unit, and where [`InvocationMetrics`] keeps it.
        const COUNTERS: &[Counter] = &[$(Counter {
            name: $name,
            unit: $unit,
            value: |metrics| metrics.$field,
            slot: |metrics| &mut metrics.$field,
        }),*];
    };
}

struct Counter {
    name: &'static str,
    unit: &'static str,
    value: fn(&InvocationMetrics) -> u64,
    slot: fn(&mut InvocationMetrics) -> &mut u64,
}

counters! {
    chunks_forwarded => "ChunksForwarded", "Count";
    bytes_forwarded => "BytesForwarded", "Bytes";
    upstream_requests => "UpstreamRequests", "Count";
    refusals => "Refusals", "Count";
    retries => "Retries", "Count";
    /// Chunks left for a later retry: batch item failures, or a failed direct invocation.
    chunks_undelivered => "ChunksUndelivered", "Count";
    /// Chunks set aside as undeliverable, on the quarantine queue.
    chunks_quarantined => "ChunksQuarantined", "Count";
    /// Chunks held because Memfault refused the project key or the URL: a setting to fix.
    configuration_rejected => "ConfigurationRejected", "Count";
    /// Requests that re-posted a chunk delivered earlier to learn whether Memfault is up.
    probe_uploads => "ProbeUploads", "Count";
}

/// Each upload's time from its first request to Memfault's accepting answer.
const LATENCY: (&str, &str) = ("UpstreamLatency", "Milliseconds");
/// Failed requests, with the `FailureClass` dimension.
const FAILURES: (&str, &str) = ("UpstreamFailures", "Count");

/// The name of every metric the function writes.
#[cfg(test)]
fn metric_names() -> Vec<&'static str> {
    let counters = COUNTERS.iter().map(|counter| counter.name);
    counters.chain([LATENCY.0, FAILURES.0]).collect()
}

impl InvocationMetrics {
    pub fn record_latency(&mut self, latency: Duration) {
        self.upstream_latency_ms
            .push((latency.as_secs_f64() * 1_000.0 * 1_000.0).round() / 1_000.0);
    }

    pub fn record_failure(&mut self, class: &'static str) {
        *self.failures_by_class.entry(class).or_default() += 1;
    }

    /// Adds another share of the same invocation, e.g. one device's uploads in a batch.
    pub(crate) fn merge(&mut self, other: InvocationMetrics) {
        for counter in COUNTERS {
            *(counter.slot)(self) += (counter.value)(&other);
        }
        self.upstream_latency_ms.extend(other.upstream_latency_ms);
        for (class, count) in other.failures_by_class {
            *self.failures_by_class.entry(class).or_default() += count;
        }
    }
}

/// CloudWatch's "Specification: Embedded metric format" (Amazon CloudWatch user guide,
/// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
/// "Target members": a metric's value is a number or an array of numbers, and "numeric array
/// metric targets MUST NOT have more than 100 members". The specification defines no value
/// object with counts or statistic sets, so a metric with more values is spread over several
/// documents, as Amazon's own EMF client libraries do.
const MAX_VALUES_PER_METRIC: usize = 100;

/// One EMF document: `members` (dimension values and metric values, by name) under a directive
/// that declares `metrics` (name, unit) with one dimension set, `dimensions`.
fn document(
    namespace: &str,
    timestamp_ms: u64,
    dimensions: &[&str],
    metrics: &[(&str, &str)],
    members: Value,
) -> Value {
    let declared: Vec<Value> = metrics
        .iter()
        .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
        .collect();
    let mut document = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions],
                "Metrics": declared,
            }]
        }
    });
    if let (Some(document), Value::Object(members)) = (document.as_object_mut(), members) {
        document.extend(members);
    }
    document
}

/// The EMF documents for one invocation: totals with the `Mode` dimension, then any further
/// `UpstreamLatency` values a hundred to a document, then one document per upstream failure
/// class with `Mode` and `FailureClass`.
///
/// Every latency value is kept: CloudWatch computes percentiles over all the values of all
/// documents, so splitting them leaves the statistics exact and each upload counted once,
/// where sampling or bucketing them would not. A batch of 10,000 uploads makes 100 documents
/// of about 1 KB each (a hundred latencies of three or four digits each), next to the
/// 10,000 log lines its uploads write anyway.
pub fn emf_documents(
    namespace: &str,
    mode: &str,
    metrics: &InvocationMetrics,
    timestamp_ms: u64,
) -> Vec<Value> {
    let mut latency = metrics.upstream_latency_ms.chunks(MAX_VALUES_PER_METRIC);
    let mut declared: Vec<(&str, &str)> = COUNTERS
        .iter()
        .map(|counter| (counter.name, counter.unit))
        .collect();
    let mut totals = json!({ "Mode": mode });
    for counter in COUNTERS {
        totals[counter.name] = json!((counter.value)(metrics));
    }
    // Declared only when there are values: a declared metric with no member is an invalid document.
    if let Some(values) = latency.next() {
        totals[LATENCY.0] = json!(values);
        declared.push(LATENCY);
    }
    let mut documents = vec![document(
        namespace,
        timestamp_ms,
        &["Mode"],
        &declared,
        totals,
    )];
    documents.extend(latency.map(|values| {
        let members = json!({"Mode": mode, (LATENCY.0): values});
        document(namespace, timestamp_ms, &["Mode"], &[LATENCY], members)
    }));
    for (class, count) in &metrics.failures_by_class {
        let members = json!({"Mode": mode, "FailureClass": class, (FAILURES.0): count});
        documents.push(document(
            namespace,
            timestamp_ms,
            &["Mode", "FailureClass"],
            &[FAILURES],
            members,
        ));
    }
    documents
}

/// Writes the documents to stdout, one line each, as CloudWatch's EMF parser expects.
pub(crate) fn emit_metrics(
    namespace: Option<&str>,
    source: SourceKind,
    metrics: &InvocationMetrics,
) {
    let mode = source.mode();
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

    fn read(relative: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The words after each `marker` in `text`, up to the closing quote or line end.
    fn names_after<'t>(text: &'t str, marker: &str, end: char) -> Vec<&'t str> {
        text.split(marker)
            .skip(1)
            .map(|rest| rest.split(end).next().unwrap_or_default().trim())
            .collect()
    }

    /// The metric names the docs describe, the alarms watch and the dashboard draws are the ones
    /// declared here: a metric added here without its docs, or an alarm left on a renamed one,
    /// fails this test.
    #[test]
    fn the_docs_the_alarms_and_the_dashboard_name_the_declared_metrics() {
        let declared = metric_names();
        let configuration = read("docs/configuration.md");
        let section = configuration
            .split("## Logs and metrics")
            .nth(1)
            .expect("docs/configuration.md has a \"Logs and metrics\" section");
        for name in &declared {
            assert!(
                section.contains(&format!("`{name}`")),
                "docs/configuration.md does not describe the metric {name}"
            );
        }
        for source in [SourceKind::Direct, SourceKind::Sqs, SourceKind::Kinesis] {
            let mode = source.mode();
            assert!(section.contains(&format!("`{mode}`")), "Mode {mode}");
        }
        let template = read("template.yaml");
        let alarmed = names_after(&template, "Namespace: !Ref MetricsNamespace\n", '\n')
            .into_iter()
            .map(|line| line.trim_start_matches("MetricName:").trim())
            .collect::<Vec<_>>();
        let drawn = names_after(&template, "[\"${MetricsNamespace}\", \"", '"');
        assert!(!alarmed.is_empty() && !drawn.is_empty());
        for name in alarmed.iter().chain(&drawn) {
            assert!(
                declared.contains(name),
                "template.yaml uses {name}, never written"
            );
        }
        let operations = read("docs/operations.md");
        let watched = names_after(&operations, "the function's `", '`');
        assert!(!watched.is_empty());
        for name in watched {
            assert!(declared.contains(&name), "docs/operations.md names {name}");
        }
    }

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
        assert_eq!(metrics_declared.len(), 10);
        for metric in metrics_declared {
            let name = metric["Name"].as_str().unwrap();
            assert!(!totals[name].is_null(), "{name} is declared but missing");
        }
        assert_eq!(totals["Mode"], "Queued");
        assert_eq!(totals["ChunksForwarded"], 3);
        assert_eq!(totals["UpstreamLatency"], json!([12.345]));
    }

    #[test]
    fn merging_adds_every_counter() {
        let mut total = InvocationMetrics {
            chunks_forwarded: 1,
            bytes_forwarded: 10,
            upstream_requests: 2,
            refusals: 1,
            retries: 1,
            chunks_undelivered: 3,
            chunks_quarantined: 1,
            configuration_rejected: 4,
            ..Default::default()
        };
        total.record_latency(Duration::from_millis(5));
        total.record_failure("Timeout");
        let mut part = total.clone();
        part.record_failure("ServerError");
        total.merge(part);
        assert_eq!(total.chunks_forwarded, 2);
        assert_eq!(total.bytes_forwarded, 20);
        assert_eq!(total.upstream_requests, 4);
        assert_eq!(total.refusals, 2);
        assert_eq!(total.retries, 2);
        assert_eq!(total.chunks_undelivered, 6);
        assert_eq!(total.chunks_quarantined, 2);
        assert_eq!(total.configuration_rejected, 8);
        assert_eq!(total.upstream_latency_ms, [5.0, 5.0]);
        assert_eq!(
            total.failures_by_class,
            BTreeMap::from([("ServerError", 1), ("Timeout", 2)])
        );
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
}
