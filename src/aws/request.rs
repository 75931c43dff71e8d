//! Signed requests to AWS (SigV4) and what their answers mean.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::Request;
use http::header::USER_AGENT;
use http_body_util::{BodyExt as _, Full, Limited};
use thiserror::Error;
use tokio::time::Instant;

use super::AwsIdentity;
use crate::http_client::{HttpClient, USER_AGENT_VALUE, error_chain, shown_body};

const ERROR_BODY_LIMIT: usize = 16 * 1024;

#[derive(Debug, Error)]
pub(crate) enum StoreError {
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

/// The function's AWS writes as one identity on the shared HTTP client: built once at init and
/// handed to the quarantine queue and the stream failure bucket alike.
#[derive(Clone)]
pub(crate) struct AwsClient {
    pub identity: AwsIdentity,
    pub http: HttpClient,
    pub request_timeout: Duration,
}

impl AwsClient {
    /// Signs and sends `request`; `Ok` for a 2xx answer within the request timeout and before
    /// `deadline`.
    pub(crate) async fn send(
        &self,
        request: AwsRequest<'_>,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        request
            .send(&self.http, &self.identity, self.request_timeout, deadline)
            .await
    }
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
    fn signed(&self, identity: &AwsIdentity) -> Result<Request<Full<Bytes>>, StoreError> {
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

    /// Signs and sends the request; `Ok` for a 2xx answer within `request_timeout` and before
    /// `deadline`.
    async fn send(
        &self,
        http: &HttpClient,
        identity: &AwsIdentity,
        request_timeout: Duration,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(StoreError::NoTimeLeft);
        }
        let timeout = request_timeout.min(remaining);
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
                body: shown_body(&String::from_utf8_lossy(&body)),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(StoreError::Timeout { service, timeout }))
    }
}
