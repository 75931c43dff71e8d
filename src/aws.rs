//! Requests to AWS with the execution role's identity: where they go (the failure queue's and
//! the failure bucket's URLs), how they are signed (SigV4), and what their answers mean.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use http::header::USER_AGENT;
use http_body_util::{BodyExt as _, Full, Limited};
use thiserror::Error;

use crate::http_client::{HttpClient, USER_AGENT_VALUE, error_chain};
use crate::url::PlainUrl;

const ERROR_BODY_LIMIT: usize = 16 * 1024;
const ERROR_BODY_SHOWN: usize = 200;

/// `MEMFAULT_FAILURE_QUEUE_URL`: an SQS queue URL such as
/// `https://sqs.eu-west-1.amazonaws.com/123456789012/memfault-quarantine.fifo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueUrl {
    url: String,
    /// Where the JSON protocol's requests go: the queue URL's scheme and authority.
    pub(crate) endpoint: String,
    pub(crate) fifo: bool,
    account: String,
    name: String,
}

impl FromStr for QueueUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = PlainUrl::parse(text)?;
        let segments: Vec<&str> = url.path.trim_matches('/').split('/').collect();
        let [account, name] = segments[..] else {
            return Err("must end in /<account id>/<queue name>".into());
        };
        Ok(Self {
            url: text.to_owned(),
            endpoint: format!("{}://{}/", url.scheme, url.authority),
            fifo: name.ends_with(".fifo"),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl QueueUrl {
    /// Whether `arn` (an SQS record's `eventSourceARN`) names this queue.
    pub fn is_queue_arn(&self, arn: &str) -> bool {
        arn.starts_with("arn:") && arn.ends_with(&format!(":{}:{}", self.account, self.name))
    }
}

impl fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// `MEMFAULT_FAILURE_BUCKET_URL`: where objects of the failure bucket are put, virtual-hosted
/// (`https://<bucket>.s3.<region>.amazonaws.com`) or path-style (`http://127.0.0.1:9000/<bucket>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    base: String,
}

impl FromStr for BucketUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = PlainUrl::parse(text)?;
        Ok(Self {
            base: format!(
                "{}://{}{}",
                url.scheme,
                url.authority,
                url.path.trim_end_matches('/')
            ),
        })
    }
}

impl BucketUrl {
    pub(crate) fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// Where and as whom the function writes what it sets aside.
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
pub enum StoreError {
    #[error("the failure record is {0} bytes, more than SQS accepts ({1})")]
    TooLarge(usize, usize),
    #[error("cannot sign the request: {0}")]
    Signing(String),
    #[error("could not reach {service}: {reason}")]
    Connection {
        service: &'static str,
        reason: String,
    },
    #[error("{service} did not answer within {} ms", .timeout.as_millis())]
    Timeout {
        service: &'static str,
        timeout: Duration,
    },
    #[error("no time left before the invocation deadline to write the failure record")]
    NoTimeLeft,
    #[error("{service} refused the record: HTTP {status}: {body}")]
    Refused {
        service: &'static str,
        status: u16,
        body: String,
    },
}

/// One signed AWS request: `service` is SigV4's name for it (`sqs`, `s3`).
pub(crate) struct AwsRequest<'a> {
    pub service: &'static str,
    pub method: &'static str,
    pub url: &'a str,
    pub headers: &'a [(&'static str, &'a str)],
    pub body: Bytes,
}

impl AwsRequest<'_> {
    fn signed(&self, identity: &FailureQueueConfig) -> Result<Request<Full<Bytes>>, StoreError> {
        let signing_error = |error: &dyn fmt::Display| StoreError::Signing(error.to_string());
        let aws_identity = identity.credentials.clone().into();
        let mut settings = SigningSettings::default();
        if self.service == "s3" {
            // S3 wants the payload's digest in a header of its own.
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let params = v4::SigningParams::builder()
            .identity(&aws_identity)
            .region(&identity.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|error| signing_error(&error))?
            .into();
        let signable = SignableRequest::new(
            self.method,
            self.url,
            self.headers.iter().copied(),
            SignableBody::Bytes(&self.body),
        )
        .map_err(|error| signing_error(&error))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|error| signing_error(&error))?
            .into_parts();
        let mut request = Request::builder().method(self.method).uri(self.url);
        for (name, value) in self.headers {
            request = request.header(*name, *value);
        }
        let mut request = request
            .header(USER_AGENT, USER_AGENT_VALUE)
            .body(Full::new(self.body.clone()))
            .map_err(|error| signing_error(&error))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(request)
    }

    /// Signs and sends the request; `Ok` for a 2xx answer within `timeout`.
    pub async fn send(
        &self,
        http: &HttpClient,
        identity: &FailureQueueConfig,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let service = self.service;
        let request = self.signed(identity)?;
        let exchange = async {
            let response = http
                .request(request)
                .await
                .map_err(|error| StoreError::Connection {
                    service,
                    reason: error_chain(&error),
                })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), ERROR_BODY_LIMIT)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            if status.is_success() {
                return Ok(());
            }
            Err(StoreError::Refused {
                service,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body)
                    .chars()
                    .take(ERROR_BODY_SHOWN)
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(StoreError::Timeout { service, timeout }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_give_the_json_protocol_endpoint_and_name_their_queue() {
        let url: QueueUrl = "https://sqs.eu-west-1.amazonaws.com/123456789012/failures"
            .parse()
            .unwrap();
        assert_eq!(url.endpoint, "https://sqs.eu-west-1.amazonaws.com/");
        assert!(!url.fifo);
        assert_eq!(
            url.to_string(),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/failures"
        );
        let fifo: QueueUrl = "https://sqs.eu-west-1.amazonaws.com/123456789012/failures.fifo"
            .parse()
            .unwrap();
        assert!(fifo.fifo);
        assert!(fifo.is_queue_arn("arn:aws:sqs:eu-west-1:123456789012:failures.fifo"));
        assert!(!fifo.is_queue_arn("arn:aws:sqs:eu-west-1:123456789012:failures"));
        assert!(!fifo.is_queue_arn("arn:aws:sqs:eu-west-1:999999999999:failures.fifo"));
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

    #[test]
    fn bucket_urls_name_objects_virtual_hosted_or_path_style() {
        let hosted: BucketUrl = "https://failures.s3.eu-west-1.amazonaws.com/"
            .parse()
            .unwrap();
        assert_eq!(
            hosted.object("quarantine/a.json"),
            "https://failures.s3.eu-west-1.amazonaws.com/quarantine/a.json"
        );
        let path: BucketUrl = "http://127.0.0.1:9000/failures".parse().unwrap();
        assert_eq!(path.object("k"), "http://127.0.0.1:9000/failures/k");
        assert!("https://key:secret@host/b".parse::<BucketUrl>().is_err());
    }
}
