//! `cargo bench --bench runtime_api`: the release binary of the function, run the way Lambda runs
//! it, against a mock Lambda Runtime API and a mock Memfault chunks API on 127.0.0.1.
//!
//! Measures cold-start init time, warm per-invocation latency against a plain HTTP client
//! baseline, peak RSS, binary size, upstream connection reuse, and direct against queued mode
//! for a fleet of devices. Prints a markdown report and writes it to `target/bench-results.md`.
//! A missed target is reported, not fatal; wrong behaviour (an undelivered chunk, a failed
//! invocation, a missing binary) fails the bench.
//!
//! Environment: `BENCH_UPSTREAM_DELAY_MS` (upstream answer delay for the fleet runs, default 1),
//! `BENCH_FUNCTION_BIN` (measure this binary instead of building one), `BENCH_FUNCTION_LOGS`
//! (show the function's logs), `BENCH_ALLOW_CPU_IDLE` (let idle CPUs sleep, see `machine.rs`).

mod function;
mod machine;
// The integration tests' builders of SQS and Kinesis records: one JSON shape for both.
#[path = "../../tests/integration/support/records.rs"]
mod records;
mod report;
mod runtime_api;
mod server;
mod upstream;
mod workload;

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::function::Function;
use crate::machine::{IdleStates, Machine};
use crate::report::{FleetRun, LargeBatch, Results, StreamRun};
use crate::runtime_api::{Completed, RuntimeApi};
use crate::upstream::Upstream;
use crate::workload::Heartbeat;
use memfault_chunk_proxy::SettledMemory;

const INIT_STARTS: usize = 20;
const WARM_UP: usize = 50;
const WARM_INVOCATIONS: usize = 1_000;
const CONNECTION_INVOCATIONS: usize = 100;
const QUEUED_BATCH_SIZES: [usize; 2] = [100, 1_000];
const STREAM_BATCH_SIZE: usize = 1_000;
/// The function's default `MEMFAULT_UPLOAD_CONCURRENCY`, which the bench leaves unset.
const UPLOAD_CONCURRENCY: usize = memfault_chunk_proxy::DEFAULT_UPLOAD_CONCURRENCY;
/// Upstream round trips the stream runs simulate: a Memfault answer from the Lambda region, and
/// loopback speed.
const STREAM_ROUND_TRIPS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(1)];
const STREAM_BATCHES: usize = 4;
/// A full batch of a shard written at its limit: 500 records from 500 distinct devices, the
/// case where upload concurrency decides whether the function keeps up.
const STREAM_DEVICES_PER_BATCH: usize = 500;
const STREAM_CHUNKS_PER_DEVICE: usize = 1;
/// A batch close to Lambda's 6 MB limit for a synchronous invocation's payload.
const LARGE_BATCH_DEVICES: usize = 100;
const LARGE_BATCH_CHUNKS_PER_DEVICE: usize = 10;
const LARGE_BATCH_CHUNK_BYTES: usize = 3_000;
const LAMBDA_SYNC_PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

fn main() {
    let binary = function::release_binary();
    let idle_states = IdleStates::limit();
    let started = Instant::now();
    // One thread for the mocks and the driver: the function gets the other core to itself, and
    // no answer waits for a cross-thread wake-up.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let results = runtime.block_on(run(&binary, idle_states.describe()));
    let markdown = results.markdown(started.elapsed());
    println!("\n{markdown}");
    let path = function::target_dir().join("bench-results.md");
    std::fs::write(&path, &markdown)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    println!("Written to {}", path.display());
}

async fn run(function_binary: &function::Binary, idle_states: String) -> Results {
    let machine = Machine::probe();
    let upstream_delay = upstream_delay();
    let heartbeat = Heartbeat::load();
    let binary = function_binary.path.as_path();
    let binary_bytes = std::fs::metadata(binary)
        .unwrap_or_else(|error| panic!("{}: {error}", binary.display()))
        .len();

    progress("init time, http upstream");
    let idle_upstream = Upstream::start(Duration::ZERO).await;
    let loopback = idle_upstream.base_url();
    let init_http = init_times(binary, function::ChunksUrl::Loopback(&loopback)).await;
    progress("init time, default https upstream");
    let init_https = init_times(binary, function::ChunksUrl::Default).await;
    assert_eq!(
        idle_upstream.seen().requests,
        0,
        "no event was served, yet the upstream was called"
    );

    progress("warm invocations and baseline");
    let upstream = Upstream::start(Duration::ZERO).await;
    let (invocation, warm_peak_rss_kib) = warm_latencies(binary, &upstream, &heartbeat).await;
    let baseline = baseline_latencies(&upstream, &heartbeat).await;
    assert_eq!(
        upstream.seen().chunks,
        2 * (WARM_UP + WARM_INVOCATIONS) as u64,
        "the upstream did not receive every chunk"
    );

    progress("connection reuse");
    let connections = connections_for(binary, &heartbeat, CONNECTION_INVOCATIONS).await;

    let fleet_events = workload::fleet_events();
    let mut fleet = Vec::new();
    progress("fleet, direct mode");
    fleet.push(
        deliver_fleet(
            binary,
            upstream_delay,
            "Direct (one instance, sequential)".to_owned(),
            workload::direct_events(&fleet_events),
            expect_delivered,
        )
        .await,
    );
    for batch_size in QUEUED_BATCH_SIZES {
        progress(&format!("fleet, queued mode, batches of {batch_size}"));
        fleet.push(
            deliver_fleet(
                binary,
                upstream_delay,
                format!("Queued, SQS batches of {batch_size}"),
                workload::sqs_batches(&fleet_events, batch_size),
                expect_no_batch_failures,
            )
            .await,
        );
    }

    progress(&format!(
        "fleet, stream mode, batches of {STREAM_BATCH_SIZE}"
    ));
    fleet.push(
        deliver_fleet(
            binary,
            upstream_delay,
            format!("Stream, Kinesis batches of {STREAM_BATCH_SIZE}"),
            workload::kinesis_batches(&fleet_events, STREAM_BATCH_SIZE),
            expect_no_batch_failures,
        )
        .await,
    );

    let mut stream = Vec::new();
    for round_trip in STREAM_ROUND_TRIPS {
        progress(&format!(
            "stream batches, {} ms upstream",
            round_trip.as_millis()
        ));
        stream.push(stream_round_trips(binary, round_trip).await);
    }
    progress("stream mode, one batch near 6 MB");
    let large_batch = large_batch(binary).await;
    progress("memory of settled records, full");
    let settled_memory_kib = settled_memory_kib(binary).await;

    Results {
        machine,
        idle_states,
        binary: binary.to_owned(),
        binary_origin: function_binary.origin,
        binary_bytes,
        init_http,
        init_https,
        invocation,
        baseline,
        warm_peak_rss_kib,
        connections,
        connection_invocations: CONNECTION_INVOCATIONS,
        upstream_delay,
        fleet,
        stream,
        large_batch,
        settled_memory_kib,
    }
}

/// What the memory of settled records costs the function when full: one instance's peak resident
/// set after its first Kinesis batch, and again once its batches have named more distinct records
/// than the memory holds (every batch alike otherwise: 1,000 records of 80-byte chunks).
async fn settled_memory_kib(binary: &Path) -> u64 {
    const RECORDS_PER_BATCH: usize = 1_000;
    let batches = SettledMemory::CAPACITY / RECORDS_PER_BATCH + 10;
    let shard: Vec<String> = (0..batches)
        .flat_map(|batch| {
            workload::interleaved_events(RECORDS_PER_BATCH, 1, workload::CHUNK_BYTES, batch as u64)
        })
        .collect();
    let upstream = Upstream::start(Duration::ZERO).await;
    let url = upstream.base_url();
    let mut instance = Instance::start(binary, function::ChunksUrl::Loopback(&url)).await;
    let mut events = workload::kinesis_batches(&shard, RECORDS_PER_BATCH).into_iter();
    let first = events.next().expect("a first batch");
    expect_no_batch_failures(&instance.invoke(first).await.body);
    let empty_kib = instance.function.peak_rss_kib();
    for event in events {
        expect_no_batch_failures(&instance.invoke(event).await.body);
    }
    assert_eq!(
        upstream.seen().chunks,
        shard.len() as u64,
        "settled memory: chunks went missing"
    );
    instance.function.peak_rss_kib().saturating_sub(empty_kib)
}

fn progress(step: &str) {
    eprintln!("runtime_api bench: {step}");
}

fn upstream_delay() -> Duration {
    let text = std::env::var("BENCH_UPSTREAM_DELAY_MS").unwrap_or_else(|_| "1".to_owned());
    let millis = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("BENCH_UPSTREAM_DELAY_MS={text:?} is not a whole number"));
    Duration::from_millis(millis)
}

/// A function process and the Runtime API it polls.
struct Instance {
    api: RuntimeApi,
    function: Function,
}

impl Instance {
    async fn start(binary: &Path, chunks_url: function::ChunksUrl<'_>) -> Self {
        let api = RuntimeApi::start().await;
        let function = Function::spawn(binary, &api.host_port(), chunks_url);
        Self { api, function }
    }

    /// Waits until the function asks for an event; returns when it did.
    async fn ready(&mut self) -> Instant {
        tokio::select! {
            since = self.api.ready() => since,
            status = self.function.exited() => exited(status),
        }
    }

    /// Spawn to the first request for an event.
    async fn init_time(&mut self) -> Duration {
        self.ready().await - self.function.spawned_at
    }

    async fn invoke(&mut self, event: Bytes) -> Completed {
        tokio::select! {
            completed = self.api.invoke(event) => completed,
            status = self.function.exited() => exited(status),
        }
    }
}

fn exited(status: ExitStatus) -> ! {
    panic!("the function exited ({status}); set BENCH_FUNCTION_LOGS=1 to see its logs")
}

async fn init_times(binary: &Path, chunks_url: function::ChunksUrl<'_>) -> Vec<Duration> {
    let mut times = Vec::with_capacity(INIT_STARTS);
    for _ in 0..INIT_STARTS {
        let mut instance = Instance::start(binary, chunks_url).await;
        times.push(instance.init_time().await);
    }
    times
}

/// A direct invocation answers `{"device_serial", "bytes", "status", "attempts"}` on delivery.
fn expect_delivered(body: &[u8]) {
    let answer: Value = serde_json::from_slice(body).expect("the response is JSON");
    assert_eq!(
        answer["status"],
        StatusCode::ACCEPTED.as_u16(),
        "not delivered: {answer}"
    );
}

/// A queued invocation answers `{"batchItemFailures": [...]}`; every record must be delivered.
fn expect_no_batch_failures(body: &[u8]) {
    let answer: Value = serde_json::from_slice(body).expect("the response is JSON");
    let failures = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer}"));
    assert!(failures.is_empty(), "undelivered records: {answer}");
}

/// Latencies of `WARM_INVOCATIONS` heartbeat invocations after `WARM_UP`, and the process's
/// peak RSS afterwards.
async fn warm_latencies(
    binary: &Path,
    upstream: &Upstream,
    heartbeat: &Heartbeat,
) -> (Vec<Duration>, u64) {
    let url = upstream.base_url();
    let mut instance = Instance::start(binary, function::ChunksUrl::Loopback(&url)).await;
    let mut latencies = Vec::with_capacity(WARM_INVOCATIONS);
    for round in 0..WARM_UP + WARM_INVOCATIONS {
        let completed = instance.invoke(heartbeat.event.clone()).await;
        expect_delivered(&completed.body);
        if round >= WARM_UP {
            latencies.push(completed.latency);
        }
    }
    (latencies, instance.function.peak_rss_kib())
}

/// The same uploads without Lambda: the bench's own hyper keep-alive client, posting the
/// heartbeat chunk to the same upstream as the function does.
async fn baseline_latencies(upstream: &Upstream, heartbeat: &Heartbeat) -> Vec<Duration> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let (serial, key) = heartbeat.serial_and_key();
    let uri = format!("{}/api/v0/chunks/{serial}", upstream.base_url());
    let mut latencies = Vec::with_capacity(WARM_INVOCATIONS);
    for round in 0..WARM_UP + WARM_INVOCATIONS {
        let request = Request::post(&uri)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("Memfault-Project-Key", key)
            .body(Full::new(heartbeat.chunk.clone()))
            .expect("a valid request");
        let sent = Instant::now();
        let response = client.request(request).await.expect("the upstream answers");
        let status = response.status();
        response
            .into_body()
            .collect()
            .await
            .expect("the upstream's answer");
        let latency = sent.elapsed();
        assert_eq!(status, StatusCode::ACCEPTED, "baseline upload not accepted");
        if round >= WARM_UP {
            latencies.push(latency);
        }
    }
    latencies
}

/// TCP connections a fresh instance opens to the upstream for `invocations` sequential heartbeats.
async fn connections_for(binary: &Path, heartbeat: &Heartbeat, invocations: usize) -> u64 {
    let upstream = Upstream::start(Duration::ZERO).await;
    let url = upstream.base_url();
    let mut instance = Instance::start(binary, function::ChunksUrl::Loopback(&url)).await;
    for _ in 0..invocations {
        let completed = instance.invoke(heartbeat.event.clone()).await;
        expect_delivered(&completed.body);
    }
    let seen = upstream.seen();
    assert_eq!(seen.chunks, invocations as u64, "chunks went missing");
    seen.connections
}

/// Sends every fleet event through one fresh instance, one invocation after another, and checks
/// that all chunks arrived. Wall time runs from the first event (init excluded) to the last answer.
async fn deliver_fleet(
    binary: &Path,
    delay: Duration,
    mode: String,
    invocations: Vec<Bytes>,
    check_answer: fn(&[u8]),
) -> FleetRun {
    let upstream = Upstream::start(delay).await;
    let url = upstream.base_url();
    let mut instance = Instance::start(binary, function::ChunksUrl::Loopback(&url)).await;
    instance.ready().await;
    let started = Instant::now();
    for event in &invocations {
        let completed = instance.invoke(event.clone()).await;
        check_answer(&completed.body);
    }
    let wall = started.elapsed();
    let peak_rss_kib = instance.function.peak_rss_kib();
    let seen = upstream.seen();
    let expected = (workload::DEVICES * workload::CHUNKS_PER_DEVICE) as u64;
    assert_eq!(seen.chunks, expected, "{mode}: chunks went missing");
    FleetRun {
        mode,
        invocations: invocations.len(),
        upstream: seen,
        wall,
        peak_rss_kib,
    }
}

/// Kinesis batches of `STREAM_DEVICES_PER_BATCH` devices with `STREAM_CHUNKS_PER_DEVICE` chunks
/// each, through one instance, against an upstream answering after `round_trip`. The ideal
/// invocation takes ceil(devices / upload concurrency) round trips: one multipart request per
/// device, `UPLOAD_CONCURRENCY` devices at a time.
async fn stream_round_trips(binary: &Path, round_trip: Duration) -> StreamRun {
    let upstream = Upstream::start(round_trip).await;
    let url = upstream.base_url();
    let mut instance = Instance::start(binary, function::ChunksUrl::Loopback(&url)).await;
    let chunks_per_batch = STREAM_DEVICES_PER_BATCH * STREAM_CHUNKS_PER_DEVICE;
    // One shard's consecutive batches: every record has a sequence number of its own.
    let shard: Vec<String> = (0..STREAM_BATCHES)
        .flat_map(|batch| {
            workload::interleaved_events(
                STREAM_DEVICES_PER_BATCH,
                STREAM_CHUNKS_PER_DEVICE,
                workload::CHUNK_BYTES,
                batch as u64,
            )
        })
        .collect();
    let mut invocations = Vec::with_capacity(STREAM_BATCHES);
    for event in workload::kinesis_batches(&shard, chunks_per_batch) {
        let completed = instance.invoke(event).await;
        expect_no_batch_failures(&completed.body);
        invocations.push(completed.latency);
    }
    let seen = upstream.seen();
    assert_eq!(
        seen.chunks,
        (STREAM_BATCHES * chunks_per_batch) as u64,
        "stream batches: chunks went missing"
    );
    StreamRun {
        round_trip,
        devices_per_batch: STREAM_DEVICES_PER_BATCH,
        chunks_per_batch,
        concurrency: UPLOAD_CONCURRENCY,
        invocations,
        upstream: seen,
    }
}

/// One Kinesis batch of about 6 MB through a fresh instance, for its peak memory.
async fn large_batch(binary: &Path) -> LargeBatch {
    let events = workload::interleaved_events(
        LARGE_BATCH_DEVICES,
        LARGE_BATCH_CHUNKS_PER_DEVICE,
        LARGE_BATCH_CHUNK_BYTES,
        7,
    );
    let [event] = <[Bytes; 1]>::try_from(workload::kinesis_batches(&events, events.len()))
        .expect("one batch");
    assert!(
        event.len() <= LAMBDA_SYNC_PAYLOAD_LIMIT,
        "the large batch ({} bytes) is over Lambda's payload limit",
        event.len()
    );
    let upstream = Upstream::start(Duration::from_millis(1)).await;
    let url = upstream.base_url();
    let mut instance = Instance::start(binary, function::ChunksUrl::Loopback(&url)).await;
    let event_bytes = event.len();
    let completed = instance.invoke(event).await;
    expect_no_batch_failures(&completed.body);
    assert_eq!(
        upstream.seen().chunks,
        events.len() as u64,
        "large batch: chunks went missing"
    );
    LargeBatch {
        event_bytes,
        records: events.len(),
        chunk_bytes: LARGE_BATCH_CHUNK_BYTES,
        latency: completed.latency,
        peak_rss_kib: instance.function.peak_rss_kib(),
    }
}
