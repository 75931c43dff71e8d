//! The Lambda handler: direct IoT rule events, and SQS batches in queued mode.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use futures_util::StreamExt as _;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::time::Instant;

use crate::config::Config;
use crate::event::{
    ChunkMessage, EventError, EventShape, parse_queue_body, parse_rule_event, shape_of,
};
use crate::memfault::{ClientInitError, Delivery, MemfaultClient, Upload, UploadError};
use crate::observability::{InvocationMetrics, emit_metrics};
use crate::routing::{Claims, Route, RouteError, resolve};

#[derive(Debug, Error)]
pub enum ForwardError {
    #[error("refused: {0}")]
    Event(#[from] EventError),
    #[error("refused: {0}")]
    Route(#[from] RouteError),
    #[error(transparent)]
    Upload(#[from] UploadError),
}

impl ForwardError {
    /// Lambda's `errorType`: `Permanent.*` will fail again however often it is retried,
    /// `Retryable.*` may succeed later (Memfault down, rate limited, or too slow).
    pub fn error_type(&self) -> String {
        match self {
            Self::Event(error) => format!("Permanent.{}", error.kind()),
            Self::Route(error) => format!("Permanent.{}", error.kind()),
            Self::Upload(error) if error.is_retryable() => {
                format!("Retryable.Upstream{}", error.class())
            }
            Self::Upload(_) => "Permanent.UpstreamRejected".to_owned(),
        }
    }
}

impl From<ForwardError> for Diagnostic {
    fn from(error: ForwardError) -> Self {
        Diagnostic {
            error_type: error.error_type(),
            error_message: error.to_string(),
        }
    }
}

/// What a direct invocation answers when Memfault accepted the chunk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivered {
    pub device_serial: String,
    pub bytes: usize,
    pub status: u16,
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Response {
    Delivered(Delivered),
    Batch(SqsBatchResponse),
}

/// Holds what lives from one invocation to the next: the configuration and the HTTP client.
pub struct Forwarder {
    config: Config,
    client: MemfaultClient,
}

/// Epoch milliseconds of 2001-09-09: no real invocation deadline is older.
const EARLIEST_EPOCH_DEADLINE_MS: u64 = 1_000_000_000_000;

/// Lambda gives the deadline as wall-clock milliseconds; timers want a monotonic instant.
/// `cargo lambda watch` sends its timeout instead (600000): a value too small to be a wall-clock
/// time is read as milliseconds from now, so the emulator does not make every upload time out.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let remaining = if deadline_ms < EARLIEST_EPOCH_DEADLINE_MS {
        Duration::from_millis(deadline_ms)
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Duration::from_millis(deadline_ms).saturating_sub(now)
    };
    Instant::now() + remaining
}

/// The outcome of one device's share of a batch.
#[derive(Default)]
struct DeviceOutcome {
    undelivered: Vec<String>,
    metrics: InvocationMetrics,
}

impl Forwarder {
    pub fn new(config: Config) -> Result<Self, ClientInitError> {
        let client = MemfaultClient::new(&config)?;
        Ok(Self { config, client })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Response, ForwardError> {
        let deadline = deadline_instant(event.context.deadline);
        match shape_of(&event.payload) {
            EventShape::Direct => self
                .forward_direct(&event.payload, deadline)
                .await
                .map(Response::Delivered),
            EventShape::QueueBatch => {
                let outcome = match serde_json::from_value::<SqsEvent>(event.payload) {
                    Ok(batch) => self.forward_batch(batch, deadline).await,
                    Err(error) => Err(EventError::NotAnSqsBatch(error.to_string()).into()),
                };
                if let Err(error) = &outcome {
                    tracing::warn!(outcome = "refused", error_type = %error.error_type(), error = %error, "SQS batch refused whole");
                }
                outcome.map(Response::Batch)
            }
        }
    }

    fn route(&self, message: &ChunkMessage) -> Result<Route, RouteError> {
        let claims = Claims {
            topic: &message.topic,
            device_serial: message.device_serial.as_deref(),
            project_key: message.project_key.as_deref(),
        };
        resolve(
            &self.config.topic_pattern,
            self.config.project_key.as_ref(),
            claims,
        )
    }

    /// One chunk from an IoT rule (or a replayed failure record): delivered, or an error.
    async fn forward_direct(
        &self,
        event: &Value,
        deadline: Instant,
    ) -> Result<Delivered, ForwardError> {
        let mut metrics = InvocationMetrics::default();
        let outcome = self.forward_one(event, deadline, &mut metrics).await;
        emit_metrics(self.config.metrics_namespace.as_deref(), "Direct", &metrics);
        outcome
    }

    async fn forward_one(
        &self,
        event: &Value,
        deadline: Instant,
        metrics: &mut InvocationMetrics,
    ) -> Result<Delivered, ForwardError> {
        let refused = |metrics: &mut InvocationMetrics, error: ForwardError| {
            metrics.refusals += 1;
            tracing::warn!(outcome = "refused", error_type = %error.error_type(), error = %error, "chunk refused");
            error
        };
        let message = parse_rule_event(event).map_err(|error| refused(metrics, error.into()))?;
        let route = self
            .route(&message)
            .map_err(|error| refused(metrics, error.into()))?;
        let bytes = message.payload.len();
        let upload = Upload::Single(message.payload);
        let result = self.client.upload(&route, &upload, deadline).await;
        record_upload(metrics, &route, &upload, &result);
        let delivery = result?;
        Ok(Delivered {
            device_serial: route.device_serial.to_string(),
            bytes,
            status: delivery.status.as_u16(),
            attempts: delivery.attempts,
        })
    }

    /// An SQS batch: every message is delivered or named in `batchItemFailures`, nothing else.
    async fn forward_batch(
        &self,
        batch: SqsEvent,
        deadline: Instant,
    ) -> Result<SqsBatchResponse, ForwardError> {
        // Failures are reported by message ID. A record without one could be neither reported
        // nor safely deleted, so such a batch fails whole, before anything is sent.
        let mut records = Vec::with_capacity(batch.records.len());
        for record in batch.records {
            match record.message_id {
                Some(id) if !id.is_empty() => records.push((id, record.body)),
                _ => return Err(EventError::MissingField("messageId").into()),
            }
        }
        let mut metrics = InvocationMetrics::default();
        let mut response = SqsBatchResponse::default();
        // BTreeMap keeps devices apart; each Vec keeps one device's chunks in arrival order.
        let mut by_route: BTreeMap<Route, Vec<(String, Bytes)>> = BTreeMap::new();
        for (message_id, body) in records {
            let routed = parse_queue_body(body.as_deref())
                .map_err(ForwardError::from)
                .and_then(|message| {
                    let route = self.route(&message)?;
                    Ok((route, message.payload))
                });
            match routed {
                Ok((route, payload)) => {
                    by_route
                        .entry(route)
                        .or_default()
                        .push((message_id, payload));
                }
                Err(error) => {
                    metrics.refusals += 1;
                    tracing::warn!(
                        outcome = "refused",
                        message_id = %message_id,
                        error_type = %error.error_type(),
                        error = %error,
                        "queued chunk refused"
                    );
                    response.add_failure(message_id);
                }
            }
        }

        let outcomes: Vec<DeviceOutcome> = futures_util::stream::iter(by_route)
            .map(|(route, chunks)| self.forward_device(route, chunks, deadline))
            .buffer_unordered(self.config.upload_concurrency)
            .collect()
            .await;
        for outcome in outcomes {
            for message_id in outcome.undelivered {
                response.add_failure(message_id);
            }
            merge(&mut metrics, outcome.metrics);
        }
        tracing::info!(
            outcome = "batch",
            chunks_forwarded = metrics.chunks_forwarded,
            bytes = metrics.bytes_forwarded,
            upstream_requests = metrics.upstream_requests,
            refused = metrics.refusals,
            undelivered = response.batch_item_failures.len(),
            "batch processed"
        );
        emit_metrics(self.config.metrics_namespace.as_deref(), "Queued", &metrics);
        Ok(response)
    }

    /// Posts one device's chunks in order, in as few requests as the batch limit allows. Its
    /// requests go one after another, never side by side, as Memfault asks. Once one fails, the
    /// chunks after it are not sent: Memfault reassembles multi-chunk messages in order.
    async fn forward_device(
        &self,
        route: Route,
        chunks: Vec<(String, Bytes)>,
        deadline: Instant,
    ) -> DeviceOutcome {
        let mut outcome = DeviceOutcome::default();
        let mut pending = chunks.into_iter().peekable();
        while pending.peek().is_some() {
            let (ids, parts): (Vec<String>, Vec<Bytes>) =
                pending.by_ref().take(self.config.batch_max_chunks).unzip();
            let upload = match <[Bytes; 1]>::try_from(parts) {
                Ok([single]) => Upload::Single(single),
                Err(parts) => Upload::Multipart(parts),
            };
            let result = self.client.upload(&route, &upload, deadline).await;
            record_upload(&mut outcome.metrics, &route, &upload, &result);
            if result.is_err() {
                outcome.undelivered.extend(ids);
                outcome.undelivered.extend(pending.map(|(id, _)| id));
                break;
            }
        }
        outcome
    }
}

fn merge(total: &mut InvocationMetrics, part: InvocationMetrics) {
    total.merge(part);
}

/// The one log line and the metrics for one upload, whatever became of it.
fn record_upload(
    metrics: &mut InvocationMetrics,
    route: &Route,
    upload: &Upload,
    result: &Result<Delivery, UploadError>,
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
            tracing::info!(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn remaining(deadline_ms: u64) -> Duration {
        deadline_instant(deadline_ms).saturating_duration_since(Instant::now())
    }

    #[test]
    fn wall_clock_deadlines_become_the_time_left() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = remaining(now_ms + 3_000);
        assert!(
            left > Duration::from_millis(2_900) && left <= Duration::from_millis(3_000),
            "{left:?}"
        );
        assert_eq!(remaining(now_ms - 1_000), Duration::ZERO);
    }

    #[test]
    fn an_emulators_timeout_is_read_as_time_from_now() {
        let left = remaining(600_000);
        assert!(
            left > Duration::from_secs(599) && left <= Duration::from_secs(600),
            "{left:?}"
        );
        assert_eq!(remaining(0), Duration::ZERO);
    }
}
