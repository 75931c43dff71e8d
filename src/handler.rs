//! The Lambda handler: builds what lives from one invocation to the next, recognises each
//! event's envelope and hands it to its source adapter, and maps failures to Lambda's errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::aws::AwsClient;
use crate::config::Config;
use crate::delivery::{Deliverer, Settings};
use crate::http_client::{self, ClientInitError, ClientSettings, HttpClient};
use crate::memfault::MemfaultClient;
use crate::quarantine::{Quarantine, RequestContext};
use crate::quarantine_queue::QuarantineQueue;
use crate::source::{self, Services};
use crate::source::{ForwardError, Response};
use crate::stream_failure_bucket::StreamFailureBucket;

/// Holds what lives from one invocation to the next: the configuration and the delivery core
/// (the Memfault client with its connections, the quarantine, the memory of settled records,
/// the stall clocks).
pub struct Forwarder {
    config: Config,
    deliverer: Deliverer,
}

/// Lambda gives the deadline as wall-clock milliseconds; timers want a monotonic instant. A
/// deadline already past leaves no time.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(deadline_ms).saturating_sub(now)
}

impl Forwarder {
    /// Everything the function builds once is built here and handed down: the one HTTP client
    /// (its connection pool serves Memfault and AWS alike), the Memfault client and the delivery
    /// core on it, and the quarantine with the identity its writes are signed with.
    pub fn new(config: Config) -> Result<Self, ClientInitError> {
        let http = http_client::build(&ClientSettings {
            destinations: &config.destinations(),
            connect_timeout: config.connect_timeout(),
            idle_per_host: config.upload_concurrency().get(),
        })?;
        let quarantine = quarantine(&config, &http);
        let settings = Settings {
            batch_max_chunks: config.batch_max_chunks(),
            upload_concurrency: config.upload_concurrency(),
            stall_limit: config.stall_limit(),
        };
        let client = MemfaultClient::new(http, &config);
        Ok(Self {
            deliverer: Deliverer::new(client, settings).with_quarantine(quarantine),
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
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
        let services = Services {
            config: &self.config,
            deliverer: &self.deliverer,
            context: RequestContext {
                request_id: &event.context.request_id,
                function_arn: &event.context.invoked_function_arn,
            },
            deadline,
        };
        source::forward(&services, event.payload.get()).await
    }
}

/// The quarantine queue and the stream failure bucket, when configured, written as the
/// execution role on the shared client.
fn quarantine(config: &Config, http: &HttpClient) -> Option<Quarantine> {
    let settings = config.quarantine()?;
    let aws = AwsClient {
        identity: settings.identity.clone(),
        http: http.clone(),
        request_timeout: config.request_timeout(),
    };
    let bucket = (settings.bucket.clone()).map(|url| StreamFailureBucket::new(url, aws.clone()));
    Some(Quarantine::new(
        QuarantineQueue::new(settings.queue.clone(), aws),
        bucket,
        config.time_budget(),
        config.upload_concurrency(),
    ))
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
        // What cargo-lambda's emulator sends (its timeout): a deadline in 1970.
        assert_eq!(remaining(600_000), Duration::ZERO);
    }
}
