//! The delivery core: how the chunks of one invocation become uploads to Memfault.
//!
//! Every event source (a direct invocation, an SQS batch, a Kinesis batch, a replayed failure
//! record) hands over the same thing: items in the order the source delivered them, each either
//! routed to a device or refused. This is the one place that decides how they are grouped,
//! ordered, held back and uploaded, and so where to look to answer "can a device's chunks
//! overtake each other?" (no) or "can two requests for one device run at once?" (no).

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::time::Instant;

use crate::handler::ForwardError;
use crate::memfault::{Delivery, MemfaultClient, Upload, UploadError};
use crate::observability::InvocationMetrics;
use crate::routing::Route;

/// A chunk that passed validation and knows where it goes.
#[derive(Debug, Clone)]
pub struct Routed {
    pub route: Route,
    pub payload: Bytes,
}

/// What became of one item.
#[derive(Debug)]
pub enum Outcome {
    /// Memfault accepted the request that carried it.
    Delivered(Delivery),
    /// Never sent: the item itself is wrong and will be refused again however often it is retried.
    Refused(ForwardError),
    /// The request that carried it failed.
    Failed(UploadError),
    /// Never sent, because an earlier chunk of the same device was not delivered: sending it
    /// would let it overtake that chunk.
    HeldBack,
}

impl Outcome {
    /// True when trying again cannot help: the item must go to a failure store, not back to
    /// the source.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Refused(_) => true,
            Self::Failed(error) => !error.is_retryable(),
            Self::Delivered(_) | Self::HeldBack => false,
        }
    }
}

/// How one run goes: limits from the configuration, and how much it logs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most chunks in one request.
    pub batch_max_chunks: usize,
    /// Most devices uploaded at once.
    pub upload_concurrency: usize,
    /// Whether each delivered upload logs its line at INFO, or at DEBUG. A batch has a summary
    /// line of its own; at fleet scale a line per delivered upload would cost about as much
    /// CloudWatch Logs ingestion as the rest of the pipeline together (docs/cost-model.md).
    /// Failures are logged one by one, always.
    pub deliveries_at_info: bool,
}

/// One device's chunks, in source order, with their positions in the batch.
struct DeviceQueue {
    route: Route,
    chunks: Vec<(usize, Bytes)>,
}

/// Delivers `items` and returns one outcome per item, in the same order.
///
/// Devices are uploaded up to `settings.upload_concurrency` at a time, started in the order of
/// their first chunk in the batch, so that when the deadline cuts a run short the earliest
/// chunks are the ones that were tried: a stream's checkpoint then moves forward with every
/// retry instead of resending the same batch. One device's requests go strictly one after
/// another, and its first failure holds back everything after it.
pub async fn deliver(
    client: &MemfaultClient,
    settings: Settings,
    items: Vec<Result<Routed, ForwardError>>,
    deadline: Instant,
    metrics: &mut InvocationMetrics,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(items.len());
    let mut devices: Vec<DeviceQueue> = Vec::new();
    let mut device_of: HashMap<Route, usize> = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(Routed { route, payload }) => {
                let device = *device_of.entry(route.clone()).or_insert_with(|| {
                    devices.push(DeviceQueue {
                        route,
                        chunks: Vec::new(),
                    });
                    devices.len() - 1
                });
                devices[device].chunks.push((index, payload));
                outcomes.push(None);
            }
            Err(refusal) => outcomes.push(Some(Outcome::Refused(refusal))),
        }
    }

    // A lone device (every direct invocation) needs no scheduling between devices.
    let runs = if devices.len() == 1 {
        let device = devices.pop().expect("one device");
        futures_util::stream::once(deliver_device(client, settings, device, deadline)).left_stream()
    } else {
        futures_util::stream::iter(devices)
            .map(|device| deliver_device(client, settings, device, deadline))
            .buffer_unordered(settings.upload_concurrency.max(1))
            .right_stream()
    };
    let mut runs = std::pin::pin!(runs);
    let mut not_started = NotStarted::default();
    while let Some(run) = runs.next().await {
        metrics.merge(run.metrics);
        not_started.devices += run.not_started.devices;
        not_started.chunks += run.not_started.chunks;
        for (index, outcome) in run.outcomes {
            outcomes[index] = Some(outcome);
        }
    }
    // Uploads the deadline left no time for get one line between them, not one each: a large
    // batch would otherwise spend the time it has left on writing them.
    if not_started.devices > 0 {
        tracing::warn!(
            outcome = "upstream_unavailable",
            failure_class = "Deadline",
            devices = not_started.devices,
            chunks = not_started.chunks,
            "uploads not started: the invocation deadline is within MEMFAULT_DEADLINE_MARGIN_MS"
        );
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.expect("every routed item belongs to exactly one device"))
        .collect()
}

struct DeviceRun {
    outcomes: Vec<(usize, Outcome)>,
    metrics: InvocationMetrics,
    not_started: NotStarted,
}

/// Uploads that were never attempted because the deadline was too close.
#[derive(Default)]
struct NotStarted {
    devices: usize,
    chunks: usize,
}

/// Posts one device's chunks in order, in as few requests as the batch limit allows.
async fn deliver_device(
    client: &MemfaultClient,
    settings: Settings,
    device: DeviceQueue,
    deadline: Instant,
) -> DeviceRun {
    let mut run = DeviceRun {
        outcomes: Vec::with_capacity(device.chunks.len()),
        metrics: InvocationMetrics::default(),
        not_started: NotStarted::default(),
    };
    let mut pending = device.chunks.into_iter().peekable();
    while pending.peek().is_some() {
        let (indices, parts): (Vec<usize>, Vec<Bytes>) = pending
            .by_ref()
            .take(settings.batch_max_chunks.max(1))
            .unzip();
        let upload = match <[Bytes; 1]>::try_from(parts) {
            Ok([single]) => Upload::Single(single),
            Err(parts) => Upload::Multipart(parts),
        };
        let result = client.upload(&device.route, &upload, deadline).await;
        if let Err(UploadError::NoTimeLeft) = result {
            run.metrics.record_failure(UploadError::NoTimeLeft.class());
            run.not_started = NotStarted {
                devices: 1,
                chunks: upload.chunk_count() + pending.len(),
            };
        } else {
            record_upload(
                &mut run.metrics,
                &device.route,
                &upload,
                &result,
                settings.deliveries_at_info,
            );
        }
        match result {
            Ok(delivery) => run.outcomes.extend(
                indices
                    .into_iter()
                    .map(|index| (index, Outcome::Delivered(delivery))),
            ),
            Err(error) => {
                run.outcomes.extend(
                    indices
                        .into_iter()
                        .map(|index| (index, Outcome::Failed(error.clone()))),
                );
                run.outcomes
                    .extend(pending.map(|(index, _)| (index, Outcome::HeldBack)));
                break;
            }
        }
    }
    run
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

/// The one log line and the metrics for one upload, whatever became of it.
fn record_upload(
    metrics: &mut InvocationMetrics,
    route: &Route,
    upload: &Upload,
    result: &Result<Delivery, UploadError>,
    at_info: bool,
) {
    let attempts = match result {
        Ok(delivery) => delivery.attempts,
        Err(error) => error.attempts(),
    };
    metrics.upstream_requests += u64::from(attempts);
    metrics.retries += u64::from(attempts.saturating_sub(1));
    match result {
        Ok(delivery) => {
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
                attempts,
                upstream_ms = delivery.upstream.as_millis() as u64,
                "chunks delivered to Memfault"
            );
        }
        Err(error) => {
            metrics.record_failure(error.class());
            tracing::error!(
                outcome = if error.is_retryable() { "upstream_unavailable" } else { "upstream_rejected" },
                device_serial = %route.device_serial,
                project_key = %route.project_key,
                chunks = upload.chunk_count(),
                bytes = upload.payload_bytes(),
                status = error.status().map(|status| status.as_u16()),
                attempts,
                failure_class = error.class(),
                error = %error,
                "chunks not delivered"
            );
        }
    }
}
