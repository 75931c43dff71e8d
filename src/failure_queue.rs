//! The failure queue as a place the function writes to: records that retrying cannot help are
//! sent there with their data (src/quarantine.rs says which and how), as `SendMessage` calls
//! signed with the execution role's credentials.
//!
//! A FIFO queue (a URL ending in `.fifo`) gets each record with its device as message group and
//! a digest of the record's identity as deduplication id: a write repeated after a timeout, or
//! by the next invocation, is stored once, and a device's records replay in the order they were
//! written. A standard queue gets neither.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http_body_util::{BodyExt as _, Full, Limited};
use serde_json::json;
use thiserror::Error;
use tokio::time::Instant;

use crate::config::PlainUrl;
use crate::http_client::{HttpClient, error_chain};
use crate::memfault::USER_AGENT_VALUE;

const SQS_TARGET: &str = "AmazonSQS.SendMessage";
const SQS_CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// SQS's message size limit, 1 MiB since August 2025 (SQS developer guide, "Amazon SQS message
/// quotas"). An IoT message (at most 128 KiB) always fits, with room for the base64 growth and
/// the record around it; a larger Kinesis record does not.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
const ERROR_BODY_LIMIT: usize = 16 * 1024;
const ERROR_BODY_SHOWN: usize = 200;

/// `MEMFAULT_FAILURE_QUEUE_URL`: an SQS queue URL such as
/// `https://sqs.eu-west-1.amazonaws.com/123456789012/memfault-failures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrl {
    url: String,
    fifo: bool,
    /// Where the JSON protocol's requests go: the queue URL's scheme and authority.
    endpoint: String,
}

impl FromStr for QueueUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = PlainUrl::parse(text)?;
        if url.path.trim_matches('/').split('/').count() != 2 {
            return Err("must end in /<account id>/<queue name>".into());
        }
        Ok(Self {
            url: text.to_owned(),
            fifo: url.path.trim_end_matches('/').ends_with(".fifo"),
            endpoint: format!("{}://{}/", url.scheme, url.authority),
        })
    }
}

impl QueueUrl {
    /// Whether `arn` (an SQS record's `eventSourceARN`) names this queue: its account and name
    /// are the URL's last two path segments.
    pub fn is_queue_arn(&self, arn: &str) -> bool {
        let mut segments = self.url.trim_end_matches('/').rsplit('/');
        let (Some(name), Some(account)) = (segments.next(), segments.next()) else {
            return false;
        };
        arn.starts_with("arn:") && arn.ends_with(&format!(":{account}:{name}"))
    }
}

impl fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// Where and as whom the function sends undeliverable records.
#[derive(Debug, Clone)]
pub struct FailureQueueConfig {
    pub url: QueueUrl,
    /// The signing region: Lambda's `AWS_REGION`.
    pub region: String,
    /// The execution role's credentials, which Lambda puts in the environment. Their `Debug`
    /// shows no secret.
    pub credentials: Credentials,
}

#[derive(Debug, Error)]
pub enum QuarantineError {
    #[error("the failure record is {0} bytes, more than SQS accepts ({MAX_MESSAGE_BYTES})")]
    TooLarge(usize),
    #[error("cannot sign the request to the failure queue: {0}")]
    Signing(String),
    #[error("could not reach the failure queue: {0}")]
    Connection(String),
    #[error("the failure queue did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("no time left before the invocation deadline to write to the failure queue")]
    NoTimeLeft,
    #[error("the failure queue refused the record: HTTP {status}: {body}")]
    Refused { status: u16, body: String },
}

/// Sends failure records to the queue. Shares the function's HTTP client and its connections.
pub struct FailureQueue {
    config: FailureQueueConfig,
    http: HttpClient,
    request_timeout: Duration,
}

impl FailureQueue {
    pub fn new(config: FailureQueueConfig, http: HttpClient, request_timeout: Duration) -> Self {
        Self {
            config,
            http,
            request_timeout,
        }
    }

    /// Sends one message; `Ok` once SQS has stored it. `group` and `deduplication_id` are used
    /// by a FIFO queue (each at most 128 characters of SQS's allowed set).
    pub async fn send(
        &self,
        message: &str,
        group: &str,
        deduplication_id: &str,
        deadline: Instant,
    ) -> Result<(), QuarantineError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(QuarantineError::TooLarge(message.len()));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(QuarantineError::NoTimeLeft);
        }
        let mut call = json!({"QueueUrl": self.config.url.url, "MessageBody": message});
        if self.config.url.fifo {
            call["MessageGroupId"] = json!(group);
            call["MessageDeduplicationId"] = json!(deduplication_id);
        }
        let body = Bytes::from(call.to_string());
        let request = self.signed_request(body)?;
        let timeout = self.request_timeout.min(remaining);
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|error| QuarantineError::Connection(error_chain(&error)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&body);
                Err(QuarantineError::Refused {
                    status: status.as_u16(),
                    body: text
                        .chars()
                        .take(ERROR_BODY_SHOWN)
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect(),
                })
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(QuarantineError::Timeout(timeout)))
    }

    fn signed_request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, QuarantineError> {
        let signing_error = |error: &dyn fmt::Display| QuarantineError::Signing(error.to_string());
        let identity = self.config.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name("sqs")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| signing_error(&error))?
            .into();
        let headers = [
            (CONTENT_TYPE.as_str(), SQS_CONTENT_TYPE),
            ("x-amz-target", SQS_TARGET),
        ];
        let signable = SignableRequest::new(
            "POST",
            self.config.url.endpoint.as_str(),
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )
        .map_err(|error| signing_error(&error))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|error| signing_error(&error))?
            .into_parts();
        let mut request = Request::post(&self.config.url.endpoint)
            .header(CONTENT_TYPE, SQS_CONTENT_TYPE)
            .header("x-amz-target", SQS_TARGET)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(Full::new(body))
            .map_err(|error| signing_error(&error))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_give_the_json_protocol_endpoint() {
        let url: QueueUrl = "https://sqs.eu-west-1.amazonaws.com/123456789012/failures"
            .parse()
            .unwrap();
        assert_eq!(url.endpoint, "https://sqs.eu-west-1.amazonaws.com/");
        assert!(!url.fifo);
        let fifo: QueueUrl = "https://sqs.eu-west-1.amazonaws.com/123456789012/failures.fifo"
            .parse()
            .unwrap();
        assert!(fifo.fifo);
        assert!(fifo.is_queue_arn("arn:aws:sqs:eu-west-1:123456789012:failures.fifo"));
        assert!(!fifo.is_queue_arn("arn:aws:sqs:eu-west-1:123456789012:failures"));
        assert!(!fifo.is_queue_arn("arn:aws:sqs:eu-west-1:999999999999:failures.fifo"));
        assert_eq!(
            url.to_string(),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/failures"
        );
    }

    #[test]
    fn anything_but_a_plain_queue_url_is_refused() {
        for (text, problem) in [
            ("sqs.eu-west-1.amazonaws.com/1/q", "not a URL"),
            ("/123456789012/q", "needs a scheme"),
            ("ftp://host/1/q", "is not http or https"),
            ("https://host/q", "/<account id>/<queue name>"),
            ("https://host/1/q/extra", "/<account id>/<queue name>"),
            ("https://user:pw@host/1/q", "must not carry credentials"),
            ("https://host/1/q?x=1", "must not have a query"),
        ] {
            let error = text.parse::<QueueUrl>().unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }
}
