//! The delivery core: how the items of one invocation become uploads to Memfault, and what
//! became of each.
//!
//! Every event source (a direct invocation, an SQS batch, a Kinesis batch, a replayed failure
//! record) hands over the same thing: items in the order the source delivered them, each either
//! routed to a device or refused. This is the one place that decides how they are grouped,
//! ordered, held back, split and uploaded, and into which class each outcome falls
//! (docs/delivery.md has the table):
//!
//! - a device's chunks go in source order, one request at a time: within one invocation no two
//!   requests for one device overlap, and no chunk overtakes one that was not delivered;
//! - a request Memfault refuses for what it carries is split in halves until the refused chunks
//!   stand alone; those are set aside, their neighbours delivered;
//! - a refused project key or URL keeps the device's chunks (and stops that key's other devices
//!   in this invocation), a transient failure keeps them too; in a stream, a device (or a
//!   refused project) that has kept failing for the stall limit of healthy time is set aside
//!   (`stall`, `healthy_time`, `probe`);
//! - when every device fails, no further devices are started: an outage costs Memfault about
//!   `upload_concurrency` uploads per invocation, not the whole batch.

mod healthy_time;
mod outcome;
mod probe;
mod set_aside;
mod stall;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

pub(crate) use outcome::{Kept, NotStarted, Outcome, Refusal, Undeliverable};
use probe::ProbeChunks;
pub(crate) use set_aside::ToSetAside;
use stall::{Failing, Observed, ProbeResult, Seen, StallClocks};

use crate::memfault::{Concern, Delivery, MemfaultClient, Upload, UploadError};
use crate::observability::InvocationMetrics;
use crate::quarantine::Quarantine;
use crate::routing::{ProjectKey, Route};
use crate::settled::{RecordKey, SettledMemory, Settlement};
use crate::source_kind::SourceKind;

/// A chunk that passed validation and knows where it goes.
#[derive(Debug, Clone)]
pub(crate) struct Routed {
    pub route: Route,
    pub payload: Bytes,
}

/// One item of an invocation, as its source adapter read it.
#[derive(Debug)]
pub(crate) struct Item {
    pub content: Result<Routed, Refusal>,
    /// Names the record for the memory of settled records; none where the source never resends.
    pub key: Option<RecordKey>,
    /// When the record entered its stream (Kinesis), for the log line of a stall: record age
    /// decides nothing, as after an outage or a backlog every record is old.
    pub arrived: Option<SystemTime>,
}

/// Limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Most chunks in one request.
    pub batch_max_chunks: NonZeroUsize,
    /// Most devices uploaded at once.
    pub upload_concurrency: NonZeroUsize,
    /// How long a failing device may hold its stream while Memfault is up.
    pub stall_limit: Duration,
}

/// What the core asks of Memfault: [`MemfaultClient`] in the function, a script in the core's
/// own tests.
pub(crate) trait Uploader {
    /// Posts `upload` until Memfault accepts or refuses it, or time runs out.
    async fn upload(
        &self,
        route: &Route,
        upload: &Upload,
        deadline: Instant,
    ) -> Result<Delivery, UploadError>;

    /// One request to learn whether Memfault is up.
    async fn probe(
        &self,
        route: &Route,
        upload: &Upload,
        deadline: Instant,
    ) -> Result<Delivery, UploadError>;
}

impl Uploader for MemfaultClient {
    async fn upload(
        &self,
        route: &Route,
        upload: &Upload,
        deadline: Instant,
    ) -> Result<Delivery, UploadError> {
        MemfaultClient::upload(self, route, upload, deadline).await
    }

    async fn probe(
        &self,
        route: &Route,
        upload: &Upload,
        deadline: Instant,
    ) -> Result<Delivery, UploadError> {
        MemfaultClient::probe(self, route, upload, deadline).await
    }
}

/// The core as the execution environment holds it, built once: the uploader with its
/// connections, the quarantine, the memory of settled records, the stall clocks, the chunks to
/// probe with and the limits.
pub(crate) struct Deliverer<U = MemfaultClient> {
    uploader: U,
    quarantine: Option<Quarantine>,
    memory: SettledMemory,
    clocks: StallClocks,
    probe_chunks: ProbeChunks,
    settings: Settings,
}

impl<U: Uploader> Deliverer<U> {
    pub(crate) fn new(uploader: U, settings: Settings) -> Self {
        Self {
            uploader,
            quarantine: None,
            memory: SettledMemory::default(),
            clocks: StallClocks::new(settings.stall_limit),
            probe_chunks: ProbeChunks::default(),
            settings,
        }
    }

    /// Names a record for the memory of settled records.
    pub(crate) fn record_key(&self, parts: &[&str]) -> RecordKey {
        self.memory.key(parts)
    }

    /// Delivers `items` and returns one outcome per item, in the same order.
    ///
    /// Devices are uploaded up to `upload_concurrency` at a time, started in the order of
    /// their first chunk in the batch, so that when the deadline cuts a run short the earliest
    /// chunks are the ones that were tried: a stream's checkpoint then moves forward with every
    /// retry instead of resending the same batch.
    pub(crate) async fn deliver(
        &self,
        items: Vec<Item>,
        source: SourceKind,
        deadline: Instant,
        metrics: &mut InvocationMetrics,
    ) -> Vec<Outcome> {
        let invoked = Instant::now();
        let Plan {
            mut outcomes,
            devices,
            delivered_earlier,
        } = Plan::of(items, &self.memory);
        let invocation = Invocation {
            uploader: &self.uploader,
            // Only a stream decides stalls, so only its deliveries are kept to probe with.
            probe_chunks: source.holds_order().then_some(&self.probe_chunks),
            settings: self.settings,
            delivered_at_info: source.one_item(),
            invoked,
            deadline,
            health: Health::default(),
        };
        let mut runs = invocation.run_devices(devices).await;
        let seen = Seen {
            accepted: runs.iter().any(|run| run.delivered),
            outage: invocation.health.outage.load(Ordering::Relaxed),
        };
        self.clocks.note_invocation(seen, invoked, Instant::now());
        // Only a stream holds records behind a failing device: there, it may stall.
        if source.holds_order() {
            invocation
                .decide_stalls(&mut runs, &self.clocks, &delivered_earlier, metrics)
                .await;
        }
        let mut not_started: HashMap<NotStarted, (usize, usize)> = HashMap::new();
        for run in runs {
            if let Some(reason) = run.not_started {
                let (devices, chunks) = not_started.entry(reason).or_default();
                *devices += 1;
                *chunks += run.not_started_chunks();
            }
            metrics.merge(run.metrics);
            for (index, key, outcome) in run.outcomes {
                if let (Some(key), Outcome::Delivered(_)) = (key, &outcome) {
                    self.memory.remember(key, Settlement::Delivered);
                }
                outcomes[index] = Some(outcome);
            }
        }
        log_not_started(not_started);
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every item has exactly one outcome"))
            .collect()
    }
}

/// Devices left unstarted get one line per reason, not one each: a large batch would otherwise
/// spend the time it has left on writing them.
fn log_not_started(not_started: HashMap<NotStarted, (usize, usize)>) {
    for (reason, (devices, chunks)) in not_started {
        tracing::warn!(
            outcome = "not_started",
            reason = ?reason,
            devices,
            chunks,
            "uploads not started: {reason}"
        );
    }
}

/// An invocation's items sorted out: answered already, or queued for their device.
struct Plan {
    outcomes: Vec<Option<Outcome>>,
    devices: Vec<DeviceQueue>,
    /// Chunks this environment delivered earlier, sent again: what a probe may re-post.
    delivered_earlier: Vec<Routed>,
}

impl Plan {
    fn of(items: Vec<Item>, memory: &SettledMemory) -> Self {
        let mut plan = Plan {
            outcomes: Vec::with_capacity(items.len()),
            devices: Vec::new(),
            delivered_earlier: Vec::new(),
        };
        let mut device_of: HashMap<Route, usize> = HashMap::new();
        for (index, item) in items.into_iter().enumerate() {
            let recalled = item.key.and_then(|key| memory.recall(key));
            let outcome = match (item.content, recalled) {
                (content, Some(settlement)) => {
                    if settlement == Settlement::Delivered {
                        plan.delivered_earlier.extend(content.ok());
                    }
                    Some(Outcome::Earlier(settlement))
                }
                (Err(refusal), None) => Some(Outcome::SetAside(Undeliverable::Refused(refusal))),
                (Ok(Routed { route, payload }), None) => {
                    let devices = &mut plan.devices;
                    let device = *device_of.entry(route.clone()).or_insert_with(|| {
                        devices.push(DeviceQueue {
                            route,
                            chunks: Vec::new(),
                        });
                        devices.len() - 1
                    });
                    devices[device].chunks.push(Chunk {
                        index,
                        payload,
                        key: item.key,
                        arrived: item.arrived,
                    });
                    None
                }
            };
            plan.outcomes.push(outcome);
        }
        plan
    }
}

struct Chunk {
    index: usize,
    payload: Bytes,
    key: Option<RecordKey>,
    arrived: Option<SystemTime>,
}

/// One device's chunks, in source order.
struct DeviceQueue {
    route: Route,
    chunks: Vec<Chunk>,
}

/// What the devices of one invocation learn about Memfault from each other.
#[derive(Default)]
struct Health {
    /// Devices whose last upload failed transiently, since the last delivery.
    failing_devices: AtomicUsize,
    outage: AtomicBool,
    refused_keys: Mutex<HashSet<ProjectKey>>,
}

impl Health {
    fn reason_not_to_start(&self, key: &ProjectKey) -> Option<NotStarted> {
        if self.outage.load(Ordering::Relaxed) {
            return Some(NotStarted::Outage);
        }
        let refused = self
            .refused_keys
            .lock()
            .map(|keys| keys.contains(key))
            .unwrap_or(false);
        refused.then_some(NotStarted::ProjectRefused)
    }

    fn delivered(&self) {
        self.failing_devices.store(0, Ordering::Relaxed);
    }

    /// As many failing devices in a row as can run at once, with no delivery between them,
    /// is an outage rather than bad luck of a few devices.
    fn failed_transiently(&self, upload_concurrency: NonZeroUsize) {
        let failing = self.failing_devices.fetch_add(1, Ordering::Relaxed) + 1;
        if failing >= upload_concurrency.get() {
            self.outage.store(true, Ordering::Relaxed);
        }
    }

    fn refused_key(&self, key: &ProjectKey) {
        if let Ok(mut keys) = self.refused_keys.lock() {
            keys.insert(key.clone());
        }
    }
}

struct Invocation<'a, U> {
    uploader: &'a U,
    probe_chunks: Option<&'a ProbeChunks>,
    settings: Settings,
    /// Each delivered upload logged at INFO rather than DEBUG.
    delivered_at_info: bool,
    invoked: Instant,
    deadline: Instant,
    health: Health,
}

struct DeviceRun {
    route: Route,
    outcomes: Vec<(usize, Option<RecordKey>, Outcome)>,
    metrics: InvocationMetrics,
    not_started: Option<NotStarted>,
    /// Whether Memfault accepted at least one of its uploads.
    delivered: bool,
    /// The failure that ended the run after real attempts: transient, or a refused key.
    failure: Option<UploadError>,
    /// When its oldest kept record entered its stream, for the log line of a stall.
    oldest_kept: Option<SystemTime>,
}

impl<U: Uploader> Invocation<'_, U> {
    async fn run_devices(&self, mut devices: Vec<DeviceQueue>) -> Vec<DeviceRun> {
        // A lone device (every direct invocation) needs no scheduling between devices.
        if devices.len() == 1 {
            let device = devices.pop().expect("one device");
            return vec![self.deliver_device(device).await];
        }
        let mut runs: Vec<DeviceRun> = Vec::with_capacity(devices.len());
        let mut stream = std::pin::pin!(
            futures_util::stream::iter(devices)
                .map(|device| self.deliver_device(device))
                .buffer_unordered(self.settings.upload_concurrency.get())
        );
        while let Some(run) = stream.next().await {
            runs.push(run);
        }
        runs
    }

    /// Posts one device's chunks in order, in as few requests as the limits and Memfault's
    /// answers allow.
    async fn deliver_device(&self, device: DeviceQueue) -> DeviceRun {
        let route = device.route;
        let mut run = DeviceRun::new(route.clone(), device.chunks.len());
        if let Some(reason) = self.health.reason_not_to_start(&route.project_key) {
            run.keep_all(device.chunks, reason);
            return run;
        }
        let mut pending = requests(device.chunks, self.settings.batch_max_chunks);
        while let Some(mut group) = pending.pop_front() {
            let mut payloads = group.iter().map(|chunk| chunk.payload.clone());
            let first = payloads
                .next()
                .expect("a request carries at least one chunk");
            let upload = Upload::of(first, payloads);
            let error = match self.uploader.upload(&route, &upload, self.deadline).await {
                Ok(delivery) => {
                    self.health.delivered();
                    if let (Some(chunks), Some(last)) = (self.probe_chunks, group.last()) {
                        chunks.delivered(&route, &last.payload);
                    }
                    run.delivered = true;
                    let at_info = self.delivered_at_info;
                    record_delivery(&mut run.metrics, &route, &upload, &delivery, at_info);
                    run.record(group, |_| Outcome::Delivered(delivery));
                    continue;
                }
                // No attempt was made: the deadline, not Memfault, stopped this device.
                Err(UploadError::NoTimeLeft) => {
                    run.metrics.record_failure(UploadError::NoTimeLeft.class());
                    let rest = group.into_iter().chain(pending.into_iter().flatten());
                    run.keep_all(rest.collect(), NotStarted::Deadline);
                    return run;
                }
                Err(error) => error,
            };
            record_failure(&mut run.metrics, &route, &upload, &error);
            if error.concern() == Concern::Request && group.len() > 1 {
                // Halves, in order, until the refused chunks stand alone.
                let second = group.split_off(group.len() / 2);
                pending.push_front(second);
                pending.push_front(group);
            } else if error.concern() == Concern::Request {
                run.record(group, |_| {
                    Outcome::SetAside(Undeliverable::Rejected(error.clone()))
                });
            } else {
                self.ended_by(&mut run, group, pending, error);
                return run;
            }
        }
        run
    }

    /// Keeps a device's chunks after a failure that may pass or a refused key, and tells the
    /// other devices of this invocation.
    fn ended_by(
        &self,
        run: &mut DeviceRun,
        group: Vec<Chunk>,
        pending: VecDeque<Vec<Chunk>>,
        error: UploadError,
    ) {
        if error.concern() == Concern::Configuration {
            self.health.refused_key(&run.route.project_key);
            run.metrics.configuration_rejected +=
                (group.len() + pending.iter().map(Vec::len).sum::<usize>()) as u64;
        } else {
            self.health
                .failed_transiently(self.settings.upload_concurrency);
        }
        run.failure = Some(error.clone());
        run.keep_after_failure(group, pending, error);
    }

    /// Sets aside the kept chunks of devices, and of projects, that have kept failing for the
    /// stall limit in healthy time (docs/delivery.md, "Stalled devices").
    async fn decide_stalls(
        &self,
        runs: &mut [DeviceRun],
        clocks: &StallClocks,
        delivered_earlier: &[Routed],
        metrics: &mut InvocationMetrics,
    ) {
        let stalled = {
            let observed = observed(runs);
            let undecided = !observed.failing.is_empty() || !observed.refused.is_empty();
            if undecided && clocks.probe_due(Instant::now()) {
                // A device that failed here, or a key refused here, would prove nothing.
                let eligible = |route: &Route| {
                    !observed
                        .failing
                        .iter()
                        .any(|failing| failing.route == route)
                        && !observed.refused.contains(&&route.project_key)
                };
                let chosen = self
                    .probe_chunks
                    .and_then(|chunks| chunks.choose(delivered_earlier, eligible));
                if let Some(chunk) = chosen {
                    let result = self.probe(&chunk, metrics).await;
                    clocks.note_probe(result, self.invoked, Instant::now());
                }
            }
            clocks.decide(&observed, Instant::now())
        };
        if stalled.devices.is_empty() && stalled.projects.is_empty() {
            return;
        }
        // A refused project's devices that were not started set aside with the refusal.
        let refusals: HashMap<ProjectKey, UploadError> = runs
            .iter()
            .filter_map(|run| Some((run.route.project_key.clone(), run.failure.clone()?)))
            .filter(|(_, error)| error.concern() == Concern::Configuration)
            .collect();
        for run in runs {
            let error = if stalled.devices.contains(&run.route) {
                run.failure.clone()
            } else if stalled.projects.contains(&run.route.project_key) {
                refusals.get(&run.route.project_key).cloned()
            } else {
                None
            };
            if let Some(error) = error {
                run.set_aside_as_stalled(error);
            }
        }
    }

    /// Re-posts one chunk Memfault accepted earlier, alone: Memfault drops duplicate chunks
    /// (docs/delivery.md, "Duplicates"), and its answer says whether Memfault is up now.
    async fn probe(&self, routed: &Routed, metrics: &mut InvocationMetrics) -> ProbeResult {
        let upload = Upload::of(routed.payload.clone(), []);
        let result = self
            .uploader
            .probe(&routed.route, &upload, self.deadline)
            .await;
        let attempts = match &result {
            Ok(delivery) => delivery.attempts,
            Err(error) => error.attempts(),
        };
        metrics.probe_uploads += u64::from(attempts);
        let found = match &result {
            Ok(_) => ProbeResult::Accepted,
            Err(error) if error.attempts() > 0 && error.concern() == Concern::Transient => {
                ProbeResult::Failed
            }
            Err(_) => ProbeResult::Inconclusive,
        };
        let digest = Sha256::digest(&routed.payload);
        tracing::info!(
            outcome = "probe",
            device_serial = %routed.route.device_serial,
            project_key = %routed.route.project_key,
            chunk_sha256 = %hex::encode(&digest[..8]),
            attempts,
            memfault_up = found == ProbeResult::Accepted,
            error = result.err().map(|error| error.to_string()),
            "re-posted a chunk delivered earlier to learn whether Memfault is up"
        );
        found
    }
}

/// What the clocks need to know of an invocation's runs.
fn observed(runs: &[DeviceRun]) -> Observed<'_> {
    let mut observed = Observed::default();
    for run in runs {
        if run.delivered {
            observed.delivered.push(&run.route);
            observed.accepted.push(&run.route.project_key);
        }
        match run.failure.as_ref().map(UploadError::concern) {
            Some(Concern::Transient) => observed.failing.push(Failing {
                route: &run.route,
                head: run.first_failed(),
            }),
            Some(Concern::Configuration) if !observed.refused.contains(&&run.route.project_key) => {
                observed.refused.push(&run.route.project_key)
            }
            _ => {}
        }
    }
    observed
}

/// A device's chunks in requests of at most `most` chunks, in order.
fn requests(chunks: Vec<Chunk>, most: NonZeroUsize) -> VecDeque<Vec<Chunk>> {
    let mut requests = VecDeque::new();
    let mut chunks = chunks.into_iter().peekable();
    while chunks.peek().is_some() {
        requests.push_back(chunks.by_ref().take(most.get()).collect());
    }
    requests
}

impl DeviceRun {
    fn new(route: Route, chunks: usize) -> Self {
        Self {
            route,
            outcomes: Vec::with_capacity(chunks),
            metrics: InvocationMetrics::default(),
            not_started: None,
            delivered: false,
            failure: None,
            oldest_kept: None,
        }
    }

    /// The record of its first chunk that failed.
    fn first_failed(&self) -> Option<RecordKey> {
        self.outcomes
            .iter()
            .find(|(_, _, outcome)| matches!(outcome, Outcome::Kept(Kept::Failed(_))))
            .and_then(|(_, key, _)| *key)
    }

    /// How many of its chunks it never sent.
    fn not_started_chunks(&self) -> usize {
        let not_started = |(_, _, outcome): &&(usize, Option<RecordKey>, Outcome)| {
            matches!(outcome, Outcome::Kept(Kept::NotStarted(_)))
        };
        self.outcomes.iter().filter(not_started).count()
    }

    /// Records `outcome` for each of `chunks`, whatever it is: delivered, set aside or kept.
    fn record(&mut self, chunks: Vec<Chunk>, outcome: impl Fn(&Chunk) -> Outcome) {
        self.outcomes.extend(
            chunks
                .into_iter()
                .map(|chunk| (chunk.index, chunk.key, outcome(&chunk))),
        );
    }

    fn keep(&mut self, chunks: Vec<Chunk>, outcome: impl Fn(&Chunk) -> Outcome) {
        if self.oldest_kept.is_none() {
            self.oldest_kept = chunks.first().and_then(|chunk| chunk.arrived);
        }
        self.record(chunks, outcome);
    }

    fn keep_all(&mut self, chunks: Vec<Chunk>, reason: NotStarted) {
        self.not_started = Some(reason);
        self.keep(chunks, |_| Outcome::Kept(Kept::NotStarted(reason)));
    }

    fn keep_after_failure(
        &mut self,
        failed: Vec<Chunk>,
        behind: VecDeque<Vec<Chunk>>,
        error: UploadError,
    ) {
        self.keep(failed, |_| Outcome::Kept(Kept::Failed(error.clone())));
        self.keep(behind.into_iter().flatten().collect(), |_| {
            Outcome::Kept(Kept::BehindFailure)
        });
    }

    /// Sets the device's kept chunks aside, in order, for `error`.
    fn set_aside_as_stalled(&mut self, error: UploadError) {
        let kept = |outcome: &Outcome| matches!(outcome, Outcome::Kept(_));
        let chunks = self.outcomes.iter().filter(|(_, _, outcome)| kept(outcome));
        let record_age_s = self
            .oldest_kept
            .and_then(|arrived| SystemTime::now().duration_since(arrived).ok())
            .map(|age| age.as_secs());
        tracing::warn!(
            outcome = "stalled",
            device_serial = %self.route.device_serial,
            project_key = %self.route.project_key,
            chunks = chunks.count(),
            record_age_s,
            error = %error,
            "a device's uploads kept failing while Memfault was up: its chunks are set aside (MEMFAULT_STALL_LIMIT_SECONDS)"
        );
        for (_, _, outcome) in &mut self.outcomes {
            if kept(outcome) {
                *outcome = Outcome::SetAside(Undeliverable::Stalled(error.clone()));
            }
        }
    }
}

/// An event at INFO or at DEBUG, chosen at run time (tracing fixes an event's level where it
/// is written).
macro_rules! info_or_debug {
    ($at_info:expr, $($event:tt)+) => {
        if $at_info {
            tracing::info!($($event)+)
        } else {
            tracing::debug!($($event)+)
        }
    };
}

fn record_attempts(metrics: &mut InvocationMetrics, attempts: u32) {
    metrics.upstream_requests += u64::from(attempts);
    metrics.retries += u64::from(attempts.saturating_sub(1));
}

/// The one log line and the metrics of a delivered upload.
fn record_delivery(
    metrics: &mut InvocationMetrics,
    route: &Route,
    upload: &Upload,
    delivery: &Delivery,
    at_info: bool,
) {
    record_attempts(metrics, delivery.attempts);
    metrics.chunks_forwarded += upload.chunk_count() as u64;
    metrics.bytes_forwarded += upload.payload_bytes() as u64;
    metrics.record_latency(delivery.upstream);
    info_or_debug!(
        at_info,
        outcome = "delivered",
        device_serial = %route.device_serial,
        project_key = %route.project_key,
        chunks = upload.chunk_count(),
        bytes = upload.payload_bytes(),
        status = delivery.status.as_u16(),
        attempts = delivery.attempts,
        upstream_ms = delivery.upstream.as_millis() as u64,
        "chunks delivered to Memfault"
    );
}

/// The one log line and the metrics of an upload that failed.
fn record_failure(
    metrics: &mut InvocationMetrics,
    route: &Route,
    upload: &Upload,
    error: &UploadError,
) {
    record_attempts(metrics, error.attempts());
    metrics.record_failure(error.class());
    let (outcome, message) = match error.concern() {
        Concern::Request if upload.chunk_count() > 1 => (
            "upstream_rejected",
            "Memfault refused the request: sending its chunks in smaller requests",
        ),
        Concern::Request => ("upstream_rejected", "Memfault refused the chunk"),
        Concern::Configuration => (
            "configuration_rejected",
            "Memfault refused the project key or the URL: check MEMFAULT_PROJECT_KEY(S) and MEMFAULT_CHUNKS_URL; the chunks are kept",
        ),
        Concern::Transient => ("upstream_unavailable", "chunks not delivered"),
    };
    tracing::error!(
        outcome,
        device_serial = %route.device_serial,
        project_key = %route.project_key,
        chunks = upload.chunk_count(),
        bytes = upload.payload_bytes(),
        status = error.status().map(|status| status.as_u16()),
        attempts = error.attempts(),
        failure_class = error.class(),
        error_type = %error.error_type(),
        error = %error,
        "{message}"
    );
}
