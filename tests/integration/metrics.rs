//! The EMF documents of an invocation, checked against CloudWatch's Embedded Metric Format
//! specification: structure, required members, and the limits CloudWatch enforces.

use std::collections::BTreeMap;
use std::time::Duration;

use memfault_chunk_proxy::{InvocationMetrics, emf_documents};
use serde_json::Value;

const TIMESTAMP_MS: u64 = 1_764_000_000_000;

/// The specification's limits: 100 metric definitions per directive, 30 dimension keys per
/// dimension set, 100 members per numeric array, and a log event of at most 256 KiB (the limit
/// before CloudWatch Logs raised it to 1 MiB; the lower one keeps older accounts safe).
const MAX_METRICS: usize = 100;
const MAX_DIMENSIONS: usize = 30;
const MAX_VALUES: usize = 100;
const MAX_EVENT_BYTES: usize = 256 * 1024;
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Asserts that `document` is a valid EMF document, and returns the values it gives each
/// metric, by metric name and dimension values.
fn validate(document: &Value) -> Vec<(String, Vec<String>, Vec<f64>)> {
    let line = document.to_string();
    assert!(line.len() <= MAX_EVENT_BYTES, "{} bytes", line.len());
    let root = document.as_object().expect("a JSON object");
    let aws = root["_aws"].as_object().expect("_aws is an object");
    assert_eq!(aws["Timestamp"].as_u64(), Some(TIMESTAMP_MS));
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    let mut extracted = Vec::new();
    for directive in directives {
        let namespace = directive["Namespace"].as_str().expect("Namespace");
        assert!((1..=255).contains(&namespace.len()));
        let dimension_sets = directive["Dimensions"].as_array().expect("Dimensions");
        assert!(!dimension_sets.is_empty());
        let metrics = directive["Metrics"].as_array().expect("Metrics");
        assert!(
            !metrics.is_empty() && metrics.len() <= MAX_METRICS,
            "{}",
            metrics.len()
        );
        for set in dimension_sets {
            let keys = set.as_array().expect("a dimension set is an array");
            assert!(keys.len() <= MAX_DIMENSIONS);
            let mut dimension_values = Vec::new();
            for key in keys {
                let key = key.as_str().expect("dimension keys are strings");
                let value = root[key]
                    .as_str()
                    .unwrap_or_else(|| panic!("dimension {key}"));
                assert!(!value.trim().is_empty() && value.len() <= 1024 && value.is_ascii());
                dimension_values.push(value.to_owned());
            }
            for metric in metrics {
                let name = metric["Name"].as_str().expect("Name");
                assert!((1..=255).contains(&name.len()));
                let unit = metric["Unit"].as_str().expect("Unit");
                assert!(UNITS.contains(&unit), "{unit}");
                let values = match &root[name] {
                    Value::Number(number) => vec![number.as_f64().unwrap()],
                    Value::Array(values) => {
                        assert!(!values.is_empty(), "{name} declared with no value");
                        assert!(
                            values.len() <= MAX_VALUES,
                            "{name}: {} values",
                            values.len()
                        );
                        values
                            .iter()
                            .map(|v| v.as_f64().expect("numbers"))
                            .collect()
                    }
                    other => panic!("{name} is declared but is {other}"),
                };
                extracted.push((name.to_owned(), dimension_values.clone(), values));
            }
        }
    }
    extracted
}

/// An invocation with `uploads` deliveries and a failure of each class.
fn invocation(uploads: usize) -> InvocationMetrics {
    let mut metrics = InvocationMetrics {
        chunks_forwarded: uploads as u64,
        bytes_forwarded: 87 * uploads as u64,
        upstream_requests: uploads as u64 + 3,
        refusals: 2,
        retries: 3,
        chunks_undelivered: 5,
        chunks_quarantined: 1,
        ..Default::default()
    };
    for upload in 0..uploads {
        metrics.record_latency(Duration::from_micros(1_000 + 37 * upload as u64));
    }
    for class in ["RateLimited", "ServerError", "Rejected"] {
        metrics.record_failure(class);
    }
    metrics
}

#[test]
fn every_document_is_valid_and_carries_every_value_once() {
    for uploads in [0, 1, 100, 101, 10_000] {
        let metrics = invocation(uploads);
        let documents = emf_documents("MemfaultChunkProxy", "Queued", &metrics, TIMESTAMP_MS);

        let mut values: BTreeMap<(String, Vec<String>), Vec<f64>> = BTreeMap::new();
        for document in &documents {
            for (name, dimensions, found) in validate(document) {
                values.entry((name, dimensions)).or_default().extend(found);
            }
        }
        let total = |name: &str, dimensions: &[&str]| {
            let key = (
                name.to_owned(),
                dimensions.iter().map(|d| d.to_string()).collect(),
            );
            values.get(&key).cloned().unwrap_or_default()
        };
        let mode = ["Queued"];
        for (name, expected) in [
            ("ChunksForwarded", metrics.chunks_forwarded),
            ("BytesForwarded", metrics.bytes_forwarded),
            ("UpstreamRequests", metrics.upstream_requests),
            ("Refusals", 2),
            ("Retries", 3),
            ("ChunksUndelivered", 5),
            ("ChunksQuarantined", 1),
        ] {
            assert_eq!(
                total(name, &mode),
                [expected as f64],
                "{name}, {uploads} uploads"
            );
        }
        let mut latency = total("UpstreamLatency", &mode);
        latency.sort_by(f64::total_cmp);
        assert_eq!(latency, metrics.upstream_latency_ms, "{uploads} uploads");
        for class in ["RateLimited", "ServerError", "Rejected"] {
            assert_eq!(total("UpstreamFailures", &["Queued", class]), [1.0]);
        }
        assert_eq!(
            documents.len(),
            1 + uploads.div_ceil(MAX_VALUES).max(1) - 1 + 3,
            "{uploads} uploads"
        );
    }
}

#[test]
fn the_new_counters_are_declared_as_counts_in_the_mode_totals() {
    let documents = emf_documents("Ns", "Stream", &invocation(1), TIMESTAMP_MS);
    let totals = &documents[0];
    assert_eq!(
        totals["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["Mode"]])
    );
    let declared = totals["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .unwrap();
    for name in ["ChunksUndelivered", "ChunksQuarantined", "ProbeUploads"] {
        let definition = declared.iter().find(|m| m["Name"] == name).expect(name);
        assert_eq!(definition["Unit"], "Count");
    }
}
