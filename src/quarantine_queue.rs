//! The quarantine queue as a place the function writes to: records that retrying cannot help are
//! sent there with their data (src/quarantine.rs says which and how), as SQS `SendMessage` calls
//! (JSON protocol) signed with the execution role's credentials.
//!
//! A FIFO queue (a URL ending in `.fifo`) gets each record with its device as message group and
//! a digest of the record's identity as deduplication id: a write repeated after a timeout, or
//! by the next invocation, is stored once, and a device's records replay in the order they were
//! written. A standard queue gets neither.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use serde_json::json;
use tokio::time::Instant;

use crate::aws::{AwsClient, AwsRequest, QueueUrl, StoreError};

const SQS_TARGET: &str = "AmazonSQS.SendMessage";
const SQS_CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// SQS's message size limit, 1 MiB since August 2025 (SQS developer guide, "Amazon SQS message
/// quotas"). An IoT message (at most 128 KiB) always fits, with room for the base64 growth and
/// the record around it; a larger Kinesis record does not.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Sends failure records to the queue. Shares the function's HTTP client and its connections.
pub(crate) struct QuarantineQueue {
    url: QueueUrl,
    aws: AwsClient,
}

impl QuarantineQueue {
    pub(crate) fn new(url: QueueUrl, aws: AwsClient) -> Self {
        Self { url, aws }
    }

    /// Whether `arn` (an SQS record's `eventSourceARN`) names this queue.
    pub(crate) fn is_queue_arn(&self, arn: &str) -> bool {
        self.url.is_queue_arn(arn)
    }

    /// Sends one message; `Ok` once SQS has stored it. `group` and `deduplication_id` are used
    /// by a FIFO queue (each at most 128 characters of SQS's allowed set).
    pub(crate) async fn send(
        &self,
        message: &str,
        group: &str,
        deduplication_id: &str,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(StoreError::TooLarge(message.len(), MAX_MESSAGE_BYTES));
        }
        let url = &self.url;
        let mut call = json!({"QueueUrl": url.to_string(), "MessageBody": message});
        if url.fifo {
            call["MessageGroupId"] = json!(group);
            call["MessageDeduplicationId"] = json!(deduplication_id);
        }
        let request = AwsRequest {
            service: "sqs",
            method: "POST",
            url: &url.endpoint,
            headers: &[
                (CONTENT_TYPE.as_str(), SQS_CONTENT_TYPE),
                ("x-amz-target", SQS_TARGET),
            ],
            body: Bytes::from(call.to_string()),
        };
        self.aws.send(request, deadline).await
    }
}
