//! The stream failure bucket as a place the function writes to: a failure record too large for an SQS
//! message (a Kinesis record may hold up to 10 MiB) is put there as an object instead, so that it
//! does not hold its shard until the mapping gives up on it. Its key is derived from the record's
//! identity, so a write repeated after a timeout replaces the same object.

use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use tokio::time::Instant;

use crate::aws::{AwsIdentity, AwsRequest, BucketUrl, StoreError};
use crate::http_client::HttpClient;

pub(crate) struct StreamFailureBucket {
    url: BucketUrl,
    identity: AwsIdentity,
    http: HttpClient,
    request_timeout: Duration,
}

impl StreamFailureBucket {
    pub(crate) fn new(
        url: BucketUrl,
        identity: AwsIdentity,
        http: HttpClient,
        request_timeout: Duration,
    ) -> Self {
        Self {
            url,
            identity,
            http,
            request_timeout,
        }
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
        request
            .send(&self.http, &self.identity, self.request_timeout, deadline)
            .await
    }
}
