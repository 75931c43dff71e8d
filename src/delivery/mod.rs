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
//!   in this invocation), a transient failure keeps them too; in a stream, a device that keeps
//!   failing while others are delivered is set aside once its oldest failing record is older than
//!   the stall limit;
//! - when every device fails, no further devices are started: an outage costs Memfault about
//!   `upload_concurrency` uploads per invocation, not the whole batch.

mod outcome;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::time::Instant;

pub(crate) use outcome::{Accepted, Kept, NotStarted, Outcome, Refusal, Undeliverable};

use crate::memfault::{Concern, Delivery, MemfaultClient, Upload, UploadError};
use crate::observability::InvocationMetrics;
use crate::routing::{ProjectKey, Route};
use crate::settled::{RecordKey, SettledMemory, Settlement};

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
    /// When the record entered its stream, where stalling is bounded (Kinesis).
    pub arrived: Option<SystemTime>,
}

/// How much one run logs: a batch has a summary line of its own, and at fleet scale a line per
/// delivered upload would cost about as much CloudWatch Logs ingestion as the rest of the
/// pipeline together (docs/cost-model.md). Failures are logged one by one, always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeliveryLog {
    /// Each delivered upload at INFO: the invocation's outcome is that line.
    EachAtInfo,
    /// Each delivered upload at DEBUG.
    EachAtDebug,
}

/// Limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Most chunks in one request.
    pub batch_max_chunks: usize,
    /// Most devices uploaded at once.
    pub upload_concurrency: usize,
    /// How long a device's failing record may hold its stream while other devices are delivered.
    pub stall_limit: Duration,
}

/// Delivers `items` and returns one outcome per item, in the same order.
///
/// Devices are uploaded up to `settings.upload_concurrency` at a time, started in the order of
/// their first chunk in the batch, so that when the deadline cuts a run short the earliest
/// chunks are the ones that were tried: a stream's checkpoint then moves forward with every
/// retry instead of resending the same batch.
pub(crate) async fn deliver(
    client: &MemfaultClient,
    memory: &SettledMemory,
    settings: Settings,
    log: DeliveryLog,
    items: Vec<Item>,
    deadline: Instant,
    metrics: &mut InvocationMetrics,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
    let mut devices: Vec<DeviceQueue> = Vec::new();
    let mut device_of: HashMap<Route, usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let recalled = item.key.and_then(|key| memory.recall(key));
        match (item.content, recalled) {
            (_, Some(Settlement::Delivered)) => {
                outcomes.push(Some(Outcome::Delivered(Accepted::Earlier)));
            }
            (_, Some(Settlement::SetAside)) => {
                outcomes.push(Some(Outcome::SetAside(Undeliverable::SetAsideEarlier)));
            }
            (Err(refusal), None) => {
                outcomes.push(Some(Outcome::SetAside(Undeliverable::Refused(refusal))))
            }
            (Ok(Routed { route, payload }), None) => {
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
                outcomes.push(None);
            }
        }
    }

    let invocation = Invocation {
        client,
        settings,
        log,
        deadline,
        health: Health::default(),
    };
    let mut runs: Vec<DeviceRun> = Vec::with_capacity(devices.len());
    // A lone device (every direct invocation) needs no scheduling between devices.
    if devices.len() == 1 {
        let device = devices.pop().expect("one device");
        runs.push(invocation.deliver_device(device).await);
    } else {
        let mut stream = std::pin::pin!(
            futures_util::stream::iter(devices)
                .map(|device| invocation.deliver_device(device))
                .buffer_unordered(settings.upload_concurrency.max(1))
        );
        while let Some(run) = stream.next().await {
            runs.push(run);
        }
    }

    let memfault_answered = invocation.health.deliveries.load(Ordering::Relaxed) > 0;
    let mut not_started: HashMap<NotStarted, (usize, usize)> = HashMap::new();
    for mut run in runs {
        if memfault_answered {
            run.set_aside_if_stalled(settings.stall_limit);
        }
        if let Some(reason) = run.not_started {
            let (devices, chunks) = not_started.entry(reason).or_default();
            *devices += 1;
            *chunks += run
                .outcomes
                .iter()
                .filter(|(_, _, outcome)| matches!(outcome, Outcome::Kept(Kept::NotStarted(_))))
                .count();
        }
        metrics.merge(run.metrics);
        for (index, key, outcome) in run.outcomes {
            if let (Some(key), Outcome::Delivered(_)) = (key, &outcome) {
                memory.remember(key, Settlement::Delivered);
            }
            outcomes[index] = Some(outcome);
        }
    }
    // Devices left unstarted get one line per reason, not one each: a large batch would
    // otherwise spend the time it has left on writing them.
    for (reason, (devices, chunks)) in not_started {
        tracing::warn!(
            outcome = "not_started",
            reason = ?reason,
            devices,
            chunks,
            "uploads not started: {reason}"
        );
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every item has exactly one outcome"))
        .collect()
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
    /// Uploads Memfault accepted in this invocation.
    deliveries: AtomicUsize,
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
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        self.failing_devices.store(0, Ordering::Relaxed);
    }

    /// As many failing devices in a row as can run at once, with no delivery between them,
    /// is an outage rather than bad luck of a few devices.
    fn failed_transiently(&self, upload_concurrency: usize) {
        let failing = self.failing_devices.fetch_add(1, Ordering::Relaxed) + 1;
        if failing >= upload_concurrency.max(1) {
            self.outage.store(true, Ordering::Relaxed);
        }
    }

    fn refused_key(&self, key: &ProjectKey) {
        if let Ok(mut keys) = self.refused_keys.lock() {
            keys.insert(key.clone());
        }
    }
}

struct Invocation<'a> {
    client: &'a MemfaultClient,
    settings: Settings,
    log: DeliveryLog,
    deadline: Instant,
    health: Health,
}

struct DeviceRun {
    outcomes: Vec<(usize, Option<RecordKey>, Outcome)>,
    metrics: InvocationMetrics,
    not_started: Option<NotStarted>,
    /// The transient failure that ended the run, and when its oldest kept record arrived.
    stalled_since: Option<(UploadError, Option<SystemTime>)>,
}

impl Invocation<'_> {
    /// Posts one device's chunks in order, in as few requests as the limits and Memfault's
    /// answers allow.
    async fn deliver_device(&self, device: DeviceQueue) -> DeviceRun {
        let mut run = DeviceRun {
            outcomes: Vec::with_capacity(device.chunks.len()),
            metrics: InvocationMetrics::default(),
            not_started: None,
            stalled_since: None,
        };
        let route = device.route;
        if let Some(reason) = self.health.reason_not_to_start(&route.project_key) {
            run.keep_all(device.chunks, reason);
            return run;
        }
        let mut pending: VecDeque<Vec<Chunk>> = VecDeque::new();
        let mut chunks = device.chunks.into_iter().peekable();
        while chunks.peek().is_some() {
            pending.push_back(
                chunks
                    .by_ref()
                    .take(self.settings.batch_max_chunks.max(1))
                    .collect(),
            );
        }
        while let Some(mut group) = pending.pop_front() {
            let parts: Vec<Bytes> = group.iter().map(|chunk| chunk.payload.clone()).collect();
            let upload = match <[Bytes; 1]>::try_from(parts) {
                Ok([single]) => Upload::Single(single),
                Err(parts) => Upload::Multipart(parts),
            };
            let result = self.client.upload(&route, &upload, self.deadline).await;
            let error = match result {
                Ok(delivery) => {
                    self.health.delivered();
                    record_delivery(&mut run.metrics, &route, &upload, &delivery, self.log);
                    run.settle(group, |_| Outcome::Delivered(Accepted::Now(delivery)));
                    continue;
                }
                Err(UploadError::NoTimeLeft) => {
                    run.metrics.record_failure(UploadError::NoTimeLeft.class());
                    let rest = group.into_iter().chain(pending.into_iter().flatten());
                    run.keep_all(rest.collect(), NotStarted::Deadline);
                    return run;
                }
                Err(error) => error,
            };
            record_failure(&mut run.metrics, &route, &upload, &error);
            match error.concern() {
                Concern::Request if group.len() > 1 => {
                    // Halves, in order, until the refused chunks stand alone.
                    let second = group.split_off(group.len() / 2);
                    pending.push_front(second);
                    pending.push_front(group);
                }
                Concern::Request => {
                    run.settle(group, |_| {
                        Outcome::SetAside(Undeliverable::Rejected(error.clone()))
                    });
                }
                Concern::Configuration => {
                    self.health.refused_key(&route.project_key);
                    run.metrics.configuration_rejected +=
                        (group.len() + pending.iter().map(Vec::len).sum::<usize>()) as u64;
                    run.keep_after_failure(group, pending, error);
                    return run;
                }
                Concern::Transient => {
                    self.health
                        .failed_transiently(self.settings.upload_concurrency);
                    let arrived = group.first().and_then(|chunk| chunk.arrived);
                    run.stalled_since = Some((error.clone(), arrived));
                    run.keep_after_failure(group, pending, error);
                    return run;
                }
            }
        }
        run
    }
}

impl DeviceRun {
    fn settle(&mut self, chunks: Vec<Chunk>, outcome: impl Fn(&Chunk) -> Outcome) {
        self.outcomes.extend(
            chunks
                .into_iter()
                .map(|chunk| (chunk.index, chunk.key, outcome(&chunk))),
        );
    }

    fn keep_all(&mut self, chunks: Vec<Chunk>, reason: NotStarted) {
        self.not_started = Some(reason);
        self.settle(chunks, |_| Outcome::Kept(Kept::NotStarted(reason)));
    }

    fn keep_after_failure(
        &mut self,
        failed: Vec<Chunk>,
        behind: VecDeque<Vec<Chunk>>,
        error: UploadError,
    ) {
        self.settle(failed, |_| Outcome::Kept(Kept::Failed(error.clone())));
        self.settle(behind.into_iter().flatten().collect(), |_| {
            Outcome::Kept(Kept::BehindFailure)
        });
    }

    /// Sets the device's kept chunks aside when its oldest failing record has waited longer than
    /// `limit`. Called only when Memfault accepted other uploads in the same invocation: in an
    /// outage every device waits, and nothing is set aside.
    fn set_aside_if_stalled(&mut self, limit: Duration) {
        let Some((error, Some(arrived))) = &self.stalled_since else {
            return;
        };
        let waited = SystemTime::now()
            .duration_since(*arrived)
            .unwrap_or_default();
        if waited <= limit {
            return;
        }
        tracing::warn!(
            outcome = "stalled",
            waited_s = waited.as_secs(),
            chunks = self.outcomes.iter().filter(|(_, _, outcome)| matches!(outcome, Outcome::Kept(_))).count(),
            error = %error,
            "a device's uploads kept failing while other devices' were delivered: its chunks are set aside (MEMFAULT_STALL_LIMIT_SECONDS)"
        );
        for (_, _, outcome) in &mut self.outcomes {
            if matches!(outcome, Outcome::Kept(_)) {
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
    log: DeliveryLog,
) {
    record_attempts(metrics, delivery.attempts);
    metrics.chunks_forwarded += upload.chunk_count() as u64;
    metrics.bytes_forwarded += upload.payload_bytes() as u64;
    metrics.record_latency(delivery.upstream);
    info_or_debug!(
        log == DeliveryLog::EachAtInfo,
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
        error = %error,
        "{message}"
    );
}
