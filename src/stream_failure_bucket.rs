//! The stream failure bucket as a place the function writes to: a failure record too large for an SQS
//! message (a Kinesis record may hold up to 10 MiB) is put there as an object instead, so that it
//! does not hold its shard until the mapping gives up on it. Its key is derived from the record's
//! identity, so a write repeated after a timeout replaces the same object.

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use tokio::time::Instant;

use crate::aws::{AwsClient, AwsRequest, BucketUrl, StoreError};

pub(crate) struct StreamFailureBucket {
    url: BucketUrl,
    aws: AwsClient,
}

impl StreamFailureBucket {
    pub(crate) fn new(url: BucketUrl, aws: AwsClient) -> Self {
        Self { url, aws }
    }

    /// Puts one object; `Ok` once S3 has stored it.
    pub(crate) async fn put(
        &self,
        key: &str,
        document: &str,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let url = self.url.object(key);
        let request = AwsRequest {
            service: "s3",
            method: "PUT",
            url: &url,
            headers: &[(CONTENT_TYPE.as_str(), "application/json")],
            body: Bytes::copy_from_slice(document.as_bytes()),
        };
        self.aws.send(request, deadline).await
    }
}
