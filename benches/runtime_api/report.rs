//! The results, as one markdown document for the terminal and `target/bench-results.md`.

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use crate::machine::Machine;
use crate::upstream::Seen;

// The targets, in the units the table shows. MB means MiB here.
const INIT_TARGET: Duration = Duration::from_millis(5);
const OVERHEAD_TARGET: Duration = Duration::from_micros(100);
const RSS_TARGET_KIB: u64 = 8 * 1024;
const BINARY_TARGET_BYTES: u64 = 4 * 1024 * 1024;
const CONNECTIONS_TARGET: u64 = 1;
/// A 6 MB batch in a function configured with 128 MB.
const LARGE_BATCH_RSS_TARGET_KIB: u64 = 48 * 1024;

/// One delivery of the whole fleet's chunks, in one mode.
pub(crate) struct FleetRun {
    pub mode: String,
    pub invocations: usize,
    pub upstream: Seen,
    pub wall: Duration,
    pub peak_rss_kib: u64,
}

/// Kinesis batches through one instance against an upstream with a simulated round trip.
pub(crate) struct StreamRun {
    pub round_trip: Duration,
    pub devices_per_batch: usize,
    pub chunks_per_batch: usize,
    pub concurrency: usize,
    /// One per batch: from handing the event over to the answer.
    pub invocations: Vec<Duration>,
    pub upstream: Seen,
}

impl StreamRun {
    /// One multipart request per device, `concurrency` devices at a time.
    pub(crate) fn ideal(&self) -> Duration {
        self.round_trip * self.devices_per_batch.div_ceil(self.concurrency) as u32
    }

    fn mean_invocation(&self) -> Duration {
        self.invocations.iter().sum::<Duration>() / self.invocations.len().max(1) as u32
    }

    /// Chunks delivered per second of invocation time: what a GB-second buys.
    fn chunks_per_invocation_second(&self) -> f64 {
        let busy: Duration = self.invocations.iter().sum();
        (self.chunks_per_batch * self.invocations.len()) as f64 / busy.as_secs_f64()
    }
}

/// One Kinesis batch near Lambda's payload limit, through a fresh instance.
pub(crate) struct LargeBatch {
    pub event_bytes: usize,
    pub records: usize,
    pub chunk_bytes: usize,
    pub latency: Duration,
    pub peak_rss_kib: u64,
}

pub(crate) struct Results {
    pub machine: Machine,
    pub idle_states: String,
    pub binary: PathBuf,
    pub binary_origin: &'static str,
    pub binary_bytes: u64,
    pub init_http: Vec<Duration>,
    pub init_https: Vec<Duration>,
    pub invocation: Vec<Duration>,
    pub baseline: Vec<Duration>,
    pub warm_peak_rss_kib: u64,
    pub connections: u64,
    pub connection_invocations: usize,
    pub upstream_delay: Duration,
    pub fleet: Vec<FleetRun>,
    pub stream: Vec<StreamRun>,
    pub large_batch: LargeBatch,
    /// Resident growth of a full memory of settled records.
    pub settled_memory_kib: u64,
}

/// Nearest-rank percentile of unsorted samples.
pub(crate) fn percentile(samples: &[Duration], percent: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

fn ms(duration: Duration, decimals: usize) -> String {
    format!("{:.decimals$} ms", duration.as_secs_f64() * 1e3)
}

fn signed_ms(later: Duration, earlier: Duration) -> String {
    let difference = later.as_secs_f64() - earlier.as_secs_f64();
    format!("{:+.3} ms", difference * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// 1234567 → "1,234,567".
fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

fn verdict(met: bool) -> &'static str {
    if met { "PASS" } else { "MISS" }
}

impl Results {
    pub(crate) fn markdown(&self, bench_time: Duration) -> String {
        let mut out = String::new();
        self.write_markdown(&mut out, bench_time)
            .expect("writing to a String cannot fail");
        out
    }

    fn write_markdown(&self, out: &mut String, bench_time: Duration) -> fmt::Result {
        let machine = &self.machine;
        writeln!(out, "# memfault-chunk-proxy: Runtime API benchmark\n")?;
        writeln!(
            out,
            "- Machine: {} CPU(s), {}, Linux {}; load average {} at the start",
            machine.cpus, machine.cpu_model, machine.kernel, machine.load_average
        )?;
        writeln!(out, "- Idle CPUs: {}", self.idle_states)?;
        writeln!(
            out,
            "- Function: `{}` ({}); logs on at INFO, JSON, to {}",
            self.binary.display(),
            self.binary_origin,
            if crate::function::show_logs() {
                "the terminal"
            } else {
                "/dev/null"
            }
        )?;
        writeln!(
            out,
            "- Everything on 127.0.0.1: mock Lambda Runtime API and mock Memfault upstream (hyper 1, HTTP/1.1) in the bench process\n"
        )?;
        self.summary_table(out)?;
        self.fleet_table(out)?;
        self.stream_table(out)?;
        writeln!(
            out,
            "\nBench time: {:.1} s (excluding the builds).",
            bench_time.as_secs_f64()
        )
    }

    fn summary_table(&self, out: &mut String) -> fmt::Result {
        let init_row = |out: &mut String, label: &str, samples: &[Duration]| -> fmt::Result {
            let p50 = percentile(samples, 50.0);
            writeln!(
                out,
                "| {label}, {} starts | p50 {} · max {} | p50 ≤ {} | {} |",
                samples.len(),
                ms(p50, 2),
                ms(max(samples), 2),
                ms(INIT_TARGET, 0),
                verdict(p50 <= INIT_TARGET)
            )
        };
        let (invocation_p50, invocation_p99) = (
            percentile(&self.invocation, 50.0),
            percentile(&self.invocation, 99.0),
        );
        let (baseline_p50, baseline_p99) = (
            percentile(&self.baseline, 50.0),
            percentile(&self.baseline, 99.0),
        );
        let overhead_p50 = invocation_p50.saturating_sub(baseline_p50);

        writeln!(out, "| Measurement | Measured | Target | |")?;
        writeln!(out, "|---|---|---|---|")?;
        init_row(
            out,
            "Init (spawn → first `/next`), http loopback upstream",
            &self.init_http,
        )?;
        init_row(
            out,
            "Init, default `https://chunks.memfault.com` (loads the CA store)",
            &self.init_https,
        )?;
        writeln!(
            out,
            "| Warm invocation (event handed to `/next` → `/response`), {} sequential | p50 {} · p99 {} | | |",
            grouped(self.invocation.len() as u64),
            ms(invocation_p50, 3),
            ms(invocation_p99, 3)
        )?;
        writeln!(
            out,
            "| Baseline: bench's hyper keep-alive client → same upstream, same chunk, {} | p50 {} · p99 {} | | |",
            grouped(self.baseline.len() as u64),
            ms(baseline_p50, 3),
            ms(baseline_p99, 3)
        )?;
        writeln!(
            out,
            "| Overhead (invocation − baseline) | p50 {} · p99 {} | p50 ≤ {} | {} |",
            signed_ms(invocation_p50, baseline_p50),
            signed_ms(invocation_p99, baseline_p99),
            ms(OVERHEAD_TARGET, 1),
            verdict(overhead_p50 <= OVERHEAD_TARGET)
        )?;
        writeln!(
            out,
            "| Peak RSS (VmHWM) after the warm run | {} ({} KiB) | ≤ {} | {} |",
            mib(self.warm_peak_rss_kib * 1024),
            grouped(self.warm_peak_rss_kib),
            mib(RSS_TARGET_KIB * 1024),
            verdict(self.warm_peak_rss_kib <= RSS_TARGET_KIB)
        )?;
        writeln!(
            out,
            "| Binary size (x86-64) | {} ({} bytes) | ≤ {} | {} |",
            mib(self.binary_bytes),
            grouped(self.binary_bytes),
            mib(BINARY_TARGET_BYTES),
            verdict(self.binary_bytes <= BINARY_TARGET_BYTES)
        )?;
        writeln!(
            out,
            "| Upstream TCP connections for {} sequential invocations | {} | {} | {} |",
            self.connection_invocations,
            self.connections,
            CONNECTIONS_TARGET,
            verdict(self.connections <= CONNECTIONS_TARGET)
        )
    }

    fn fleet_table(&self, out: &mut String) -> fmt::Result {
        let chunks = self.fleet.first().map_or(0, |run| run.upstream.chunks);
        writeln!(
            out,
            "\n## {} chunks of {} bytes from {} devices, upstream answering after {}\n",
            grouped(chunks),
            crate::workload::CHUNK_BYTES,
            grouped(crate::workload::DEVICES as u64),
            ms(self.upstream_delay, 0)
        )?;
        writeln!(
            out,
            "| Mode | Lambda invocations | Upstream requests | Chunks per request | Upstream body bytes | Upstream connections | Wall time | Peak RSS |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|")?;
        for run in &self.fleet {
            writeln!(
                out,
                "| {} | {} | {} | {:.1} | {} | {} | {:.2} s | {} |",
                run.mode,
                grouped(run.invocations as u64),
                grouped(run.upstream.requests),
                run.upstream.chunks as f64 / run.upstream.requests.max(1) as f64,
                grouped(run.upstream.bytes),
                run.upstream.connections,
                run.wall.as_secs_f64(),
                mib(run.peak_rss_kib * 1024)
            )?;
        }
        let (requests, busy) = self.fleet.iter().fold((0, Duration::ZERO), |(n, t), run| {
            (n + run.upstream.requests, t + run.upstream.busy)
        });
        writeln!(
            out,
            "\n- Direct mode in production is spread over many concurrent Lambda instances; its wall time here is one instance taking all the events one after another."
        )?;
        writeln!(
            out,
            "- Queued mode groups each SQS batch by device and sends one `multipart/mixed` request per device (up to 500 chunks), `MEMFAULT_UPLOAD_CONCURRENCY` devices at a time; with arrivals shuffled, a batch holds few chunks of any one device."
        )?;
        writeln!(
            out,
            "- Upstream delay set by `BENCH_UPSTREAM_DELAY_MS`; measured mean time to answer: {} (from the request's arrival to the answer).",
            ms(busy / u32::try_from(requests.max(1)).unwrap_or(u32::MAX), 3)
        )
    }

    fn stream_table(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "\n## Stream mode\n")?;
        writeln!(
            out,
            "| Kinesis batches | Upstream round trip | Invocation time, mean (max) | Ideal: ceil(devices / concurrency) round trips | Chunks per invocation-second | Upstream connections | Target: one connection per upload slot, every invocation under 1 s | |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|")?;
        for run in &self.stream {
            writeln!(
                out,
                "| {} × {} chunks from {} devices | {} | {} ({}) | {} ({} × {}) | {} | {} | {} | {} |",
                run.invocations.len(),
                run.chunks_per_batch,
                run.devices_per_batch,
                ms(run.round_trip, 0),
                ms(run.mean_invocation(), 1),
                ms(max(&run.invocations), 1),
                ms(run.ideal(), 0),
                run.devices_per_batch.div_ceil(run.concurrency),
                ms(run.round_trip, 0),
                grouped(run.chunks_per_invocation_second() as u64),
                run.upstream.connections,
                run.concurrency,
                verdict(
                    run.upstream.connections == run.concurrency as u64
                        && max(&run.invocations) < Duration::from_secs(1)
                )
            )?;
        }
        let large = &self.large_batch;
        writeln!(
            out,
            "\n| Measurement | Measured | Target | |\n|---|---|---|---|\n| Peak RSS (VmHWM), one Kinesis batch of {} ({} records of {}-byte chunks), fresh instance | {} ({} KiB), invocation {} | ≤ {} | {} |",
            mib(large.event_bytes as u64),
            grouped(large.records as u64),
            large.chunk_bytes,
            mib(large.peak_rss_kib * 1024),
            grouped(large.peak_rss_kib),
            ms(large.latency, 1),
            mib(LARGE_BATCH_RSS_TARGET_KIB * 1024),
            verdict(large.peak_rss_kib <= LARGE_BATCH_RSS_TARGET_KIB)
        )?;
        writeln!(
            out,
            "| Memory of settled records: peak RSS growth from the first batch to a full memory ({} entries), one instance | {} ({} KiB) | | |",
            grouped(memfault_chunk_proxy::SettledMemory::CAPACITY as u64),
            mib(self.settled_memory_kib * 1024),
            grouped(self.settled_memory_kib)
        )
    }
}
