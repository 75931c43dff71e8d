//! The Lambda handler: recognises the event's envelope and hands it to its source adapter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::value::RawValue;
use thiserror::Error;
use tokio::time::Instant;

use crate::config::Config;
use crate::delivery::{self, Outcome, Routed, Settings};
use crate::event::{ChunkMessage, EventError};
use crate::failure_queue::FailureQueue;
use crate::memfault::{ClientInitError, MemfaultClient, UploadError};
use crate::observability::InvocationMetrics;
use crate::routing::{Claims, Route, RouteError, resolve};
use crate::source::{self, Envelope};

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
    Sqs(SqsBatchResponse),
    Kinesis(KinesisEventResponse),
}

/// Holds what lives from one invocation to the next: the configuration and the HTTP clients.
pub struct Forwarder {
    config: Config,
    client: MemfaultClient,
    failure_queue: Option<FailureQueue>,
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

impl Forwarder {
    pub fn new(config: Config) -> Result<Self, ClientInitError> {
        let client = MemfaultClient::new(&config)?;
        let failure_queue = config
            .failure_queue
            .clone()
            .map(|queue| FailureQueue::new(queue, client.http().clone(), config.request_timeout));
        Ok(Self {
            config,
            client,
            failure_queue,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn failure_queue(&self) -> Option<&FailureQueue> {
        self.failure_queue.as_ref()
    }

    /// The payload stays JSON text until its envelope is known: events the runtime could not
    /// parse into a value (nesting deeper than serde_json's limit, a lone surrogate escape, a
    /// number out of range) are refused here like any other bad event, and a batch's records
    /// are read one at a time.
    pub async fn handle(
        &self,
        event: LambdaEvent<Box<RawValue>>,
    ) -> Result<Response, ForwardError> {
        let deadline = deadline_instant(event.context.deadline);
        let payload = event.payload.get();
        match source::envelope(payload) {
            Envelope::Direct => source::direct::forward(self, payload, deadline)
                .await
                .map(Response::Delivered),
            Envelope::Sqs(records) => source::sqs::forward(self, records, deadline)
                .await
                .map(Response::Sqs),
            Envelope::Kinesis(records) => {
                source::kinesis::forward(self, records, deadline, &event.context)
                    .await
                    .map(Response::Kinesis)
            }
            Envelope::KinesisFailureRecord(batch) => {
                source::kinesis::forward_failure_record(self, &batch, deadline, &event.context)
                    .await
                    .map(Response::Kinesis)
            }
        }
    }

    /// Validates a parsed message and decides where it goes.
    pub(crate) fn routed(
        &self,
        message: Result<ChunkMessage, EventError>,
    ) -> Result<Routed, ForwardError> {
        let message = message?;
        let route = self.route(&message)?;
        Ok(Routed {
            route,
            payload: message.payload,
        })
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
            self.config.project_keys.as_ref(),
            claims,
        )
    }

    /// Delivers the items of one invocation. A batch (`batch`) logs one summary line for its
    /// deliveries; a single chunk logs its delivery as the invocation's outcome.
    pub(crate) async fn deliver(
        &self,
        items: Vec<Result<Routed, ForwardError>>,
        batch: bool,
        deadline: Instant,
        metrics: &mut InvocationMetrics,
    ) -> Vec<Outcome> {
        let settings = Settings {
            batch_max_chunks: self.config.batch_max_chunks,
            upload_concurrency: self.config.upload_concurrency,
            deliveries_at_info: !batch,
        };
        delivery::deliver(&self.client, settings, items, deadline, metrics).await
    }
}

/// The log line and the count for one refused item; `item_id` names it within its batch.
pub(crate) fn note_refusal(
    metrics: &mut InvocationMetrics,
    item_id: Option<&str>,
    error: &ForwardError,
) {
    metrics.refusals += 1;
    tracing::warn!(
        outcome = "refused",
        item_id,
        error_type = %error.error_type(),
        error = %error,
        "chunk refused"
    );
}

/// A batch that cannot be answered item by item fails whole, before anything is sent.
pub(crate) fn refuse_batch(source_name: &'static str, field: &'static str) -> ForwardError {
    let error = ForwardError::from(EventError::Unidentifiable { source_name, field });
    tracing::warn!(
        outcome = "refused",
        source = source_name,
        error_type = %error.error_type(),
        error = %error,
        "batch refused whole"
    );
    error
}

/// The one summary line of a batch, with its slowest delivered upload and the item it carried.
pub(crate) fn log_batch<'a>(
    metrics: &InvocationMetrics,
    source_name: &str,
    outcomes: impl Iterator<Item = (&'a str, &'a Outcome)>,
) {
    let slowest = outcomes
        .filter_map(|(item_id, outcome)| match outcome {
            Outcome::Delivered(delivery) => Some((delivery.upstream, item_id)),
            _ => None,
        })
        .max();
    tracing::info!(
        outcome = "batch",
        source = source_name,
        slowest_upstream_ms = slowest.map(|(upstream, _)| upstream.as_millis() as u64),
        slowest_item_id = slowest.map(|(_, item_id)| item_id),
        chunks_forwarded = metrics.chunks_forwarded,
        bytes = metrics.bytes_forwarded,
        upstream_requests = metrics.upstream_requests,
        refused = metrics.refusals,
        quarantined = metrics.chunks_quarantined,
        undelivered = metrics.chunks_undelivered,
        "batch processed"
    );
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
