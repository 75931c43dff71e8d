//! The Memfault chunks API client: one keep-alive HTTP client, retries bounded by a deadline.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use thiserror::Error;
use tokio::time::Instant;

use crate::config::{ChunksUrl, Config};
pub use crate::http_client::ClientInitError;
use crate::http_client::{self, HttpClient, error_chain};
use crate::retry::{RetryPolicy, is_retryable_status, parse_retry_after};
use crate::routing::Route;

pub const USER_AGENT_VALUE: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));
const PROJECT_KEY_HEADER: &str = "Memfault-Project-Key";
/// Enough of an error body to say what Memfault objected to; the rest is drained, not kept.
const ERROR_BODY_SHOWN: usize = 300;
const RESPONSE_BODY_LIMIT: usize = 64 * 1024;

/// What one request carries: a single chunk, or several chunks of one device in order.
#[derive(Debug, Clone)]
pub enum Upload {
    Single(Bytes),
    Multipart(Vec<Bytes>),
}

impl Upload {
    pub fn chunk_count(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Multipart(parts) => parts.len(),
        }
    }

    pub fn payload_bytes(&self) -> usize {
        match self {
            Self::Single(chunk) => chunk.len(),
            Self::Multipart(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// The body and its content type. Multipart bodies use the `multipart/mixed` form of the
    /// chunks API, one `application/octet-stream` part with a `Content-Length` per chunk.
    fn encode(&self) -> (Bytes, HeaderValue) {
        match self {
            Self::Single(chunk) => (
                chunk.clone(),
                HeaderValue::from_static("application/octet-stream"),
            ),
            Self::Multipart(parts) => {
                // 128 random bits: a chunk that contains the boundary by chance is not a
                // practical concern, so the parts are not scanned for it.
                let boundary = format!("chunk-proxy-{:032x}", fastrand::u128(..));
                let (body, content_type) = encode_multipart(parts, &boundary);
                let content_type = HeaderValue::from_str(&content_type)
                    .expect("a boundary of ASCII letters and digits is a valid header value");
                (body, content_type)
            }
        }
    }
}

/// Encodes chunks as a `multipart/mixed` body; returns the body and its `Content-Type`.
fn encode_multipart(parts: &[Bytes], boundary: &str) -> (Bytes, String) {
    const PART_HEADERS: &str = "\r\nContent-Type: application/octet-stream\r\nContent-Length: ";
    let framing = parts.len() * (boundary.len() + PART_HEADERS.len() + 32) + boundary.len() + 8;
    let mut body = BytesMut::with_capacity(framing + parts.iter().map(Bytes::len).sum::<usize>());
    for part in parts {
        body.put_slice(b"--");
        body.put_slice(boundary.as_bytes());
        body.put_slice(PART_HEADERS.as_bytes());
        body.put_slice(part.len().to_string().as_bytes());
        body.put_slice(b"\r\n\r\n");
        body.put_slice(part);
        body.put_slice(b"\r\n");
    }
    body.put_slice(b"--");
    body.put_slice(boundary.as_bytes());
    body.put_slice(b"--\r\n");
    (
        body.freeze(),
        format!("multipart/mixed; boundary={boundary}"),
    )
}

/// Memfault accepted the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub status: StatusCode,
    pub attempts: u32,
    /// From the first request to the accepting answer, waits between attempts included.
    pub upstream: Duration,
}

/// Why one attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Status {
        status: StatusCode,
        body: String,
        retry_after: Option<Duration>,
    },
    /// No connection could be opened (DNS, refused, TLS handshake, connect timeout).
    Connect(String),
    /// The connection broke while the request or the response was under way.
    Connection(String),
    Timeout(Duration),
}

impl Failure {
    /// A short, stable name for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                "RateLimited"
            }
            Self::Status { status, .. } if status.is_server_error() => "ServerError",
            Self::Status { .. } => "Rejected",
            Self::Connect(_) => "Connect",
            Self::Connection(_) => "Connection",
            Self::Timeout(_) => "Timeout",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status {
                status,
                body,
                retry_after,
            } => {
                write!(f, "HTTP {status} ({})", status_meaning(*status))?;
                if let Some(wait) = retry_after {
                    write!(f, ", Retry-After {}s", wait.as_secs())?;
                }
                if !body.is_empty() {
                    write!(f, ": {body}")?;
                }
                Ok(())
            }
            Self::Connect(reason) => write!(f, "could not connect: {reason}"),
            Self::Connection(reason) => write!(f, "connection failed: {reason}"),
            Self::Timeout(limit) => write!(f, "no answer within {} ms", limit.as_millis()),
        }
    }
}

/// What Memfault's documentation says each status means, for people reading an error.
fn status_meaning(status: StatusCode) -> &'static str {
    match status.as_u16() {
        202 => "accepted",
        400 => "malformed request",
        401 | 403 => "project key missing or invalid",
        404 => "no such endpoint: check MEMFAULT_CHUNKS_URL",
        411 => "Content-Length missing",
        413 => "chunk too large",
        415 => "unsupported Content-Type",
        429 => "rate limited",
        503 | 529 => "Memfault unavailable",
        _ if status.is_server_error() => "Memfault server error",
        _ => status.canonical_reason().unwrap_or("unexpected status"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    AttemptsExhausted,
    DeadlineReached,
    RetryAfterBeyondDeadline(Duration),
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AttemptsExhausted => f.write_str("MEMFAULT_MAX_ATTEMPTS reached"),
            Self::DeadlineReached => f.write_str("the invocation deadline leaves no time to retry"),
            Self::RetryAfterBeyondDeadline(wait) => write!(
                f,
                "Memfault asked to wait {}s, past the invocation deadline",
                wait.as_secs()
            ),
        }
    }
}

#[derive(Debug, Clone, Error)]
pub enum UploadError {
    #[error("Memfault refused the upload after {attempts} attempt(s): {failure}")]
    Rejected { failure: Failure, attempts: u32 },
    #[error(
        "Memfault did not accept the upload after {attempts} attempt(s) ({reason}); last failure: {last}"
    )]
    GaveUp {
        reason: GiveUpReason,
        last: Failure,
        attempts: u32,
    },
    #[error(
        "no time left for an upload: the invocation deadline is within MEMFAULT_DEADLINE_MARGIN_MS"
    )]
    NoTimeLeft,
}

impl UploadError {
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Rejected { attempts, .. } | Self::GaveUp { attempts, .. } => *attempts,
            Self::NoTimeLeft => 0,
        }
    }

    /// A short, stable name for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Rejected { failure, .. } | Self::GaveUp { last: failure, .. } => failure.class(),
            Self::NoTimeLeft => "Deadline",
        }
    }

    /// Only a refusal by Memfault is final; anything else may work when Lambda tries again.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Rejected {
                failure: Failure::Status { status, .. },
                ..
            }
            | Self::GaveUp {
                last: Failure::Status { status, .. },
                ..
            } => Some(*status),
            _ => None,
        }
    }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
}

/// Built once at init and shared by every invocation, so that consecutive chunks reuse one
/// keep-alive connection instead of paying a TCP and TLS handshake each.
#[derive(Clone)]
pub struct MemfaultClient {
    http: HttpClient,
    chunks_url: Arc<ChunksUrl>,
    retry: RetryPolicy,
    request_timeout: Duration,
    deadline_margin: Duration,
}

impl MemfaultClient {
    pub fn new(config: &Config) -> Result<Self, ClientInitError> {
        let http = http_client::build(config)?;
        Ok(Self {
            http,
            chunks_url: Arc::new(config.chunks_url.clone()),
            retry: config.retry,
            request_timeout: config.request_timeout,
            deadline_margin: config.deadline_margin,
        })
    }

    /// The shared connection pool, for the function's other HTTP destinations.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Posts `upload` for `route` until Memfault accepts it, refuses it, the attempts run out,
    /// or the next try would end after `deadline` less the safety margin.
    pub async fn upload(
        &self,
        route: &Route,
        upload: &Upload,
        deadline: Instant,
    ) -> Result<Delivery, UploadError> {
        let give_up_at = deadline
            .checked_sub(self.deadline_margin)
            .unwrap_or(deadline);
        let started = Instant::now();
        let (body, content_type) = upload.encode();
        let uri = self.chunks_url.for_device(&route.device_serial);
        let mut attempts = 0;
        let mut allowed_attempts = self.retry.max_attempts;
        let mut fresh_connection_retry_used = false;
        loop {
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(UploadError::NoTimeLeft);
            }
            attempts += 1;
            let request = Request::post(&uri)
                .header(CONTENT_TYPE, content_type.clone())
                .header(USER_AGENT, USER_AGENT_VALUE)
                .header(PROJECT_KEY_HEADER, route.project_key.expose())
                .body(Full::new(body.clone()));
            // Device serials and keys are validated to [A-Za-z0-9_-] and the base URL at init.
            let request = request.expect("validated parts make a valid request");
            let attempt_timeout = self.request_timeout.min(remaining);
            let failure = match self.attempt(request, attempt_timeout).await {
                Ok(answer) if answer.status.is_success() => {
                    return Ok(Delivery {
                        status: answer.status,
                        attempts,
                        upstream: started.elapsed(),
                    });
                }
                Ok(answer) => {
                    let failure = Failure::Status {
                        status: answer.status,
                        body: shown_body(&answer.body),
                        retry_after: answer.retry_after,
                    };
                    if !is_retryable_status(answer.status) {
                        return Err(UploadError::Rejected { failure, attempts });
                    }
                    failure
                }
                Err(failure) => failure,
            };

            // A pooled connection may have died while the container was frozen; the failed one
            // has left the pool, so try once more straight away, and not at the expense of the
            // configured attempts.
            let stale_connection_suspected =
                matches!(failure, Failure::Connection(_)) && !fresh_connection_retry_used;
            if stale_connection_suspected {
                fresh_connection_retry_used = true;
                allowed_attempts += 1;
            }
            if attempts >= allowed_attempts {
                return Err(UploadError::GaveUp {
                    reason: GiveUpReason::AttemptsExhausted,
                    last: failure,
                    attempts,
                });
            }
            let retry_after = match &failure {
                Failure::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            let delay = if stale_connection_suspected {
                Duration::ZERO
            } else {
                self.retry.delay(attempts, fastrand::f64(), retry_after)
            };
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            if delay >= remaining {
                let reason = match retry_after {
                    Some(wait) if wait >= remaining => GiveUpReason::RetryAfterBeyondDeadline(wait),
                    _ => GiveUpReason::DeadlineReached,
                };
                return Err(UploadError::GaveUp {
                    reason,
                    last: failure,
                    attempts,
                });
            }
            tracing::debug!(
                device_serial = %route.device_serial,
                attempt = attempts,
                failure = %failure,
                delay_ms = delay.as_millis() as u64,
                "retrying upload"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let exchange = async {
            let response = self.http.request(request).await.map_err(|error| {
                let reason = error_chain(&error);
                if error.is_connect() {
                    Failure::Connect(reason)
                } else {
                    Failure::Connection(reason)
                }
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            // Reading the body to its end is what returns the connection to the pool. A body
            // that breaks off does not change what the status said.
            let body = Limited::new(response.into_body(), RESPONSE_BODY_LIMIT)
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout(timeout)))
    }
}

fn shown_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut shown: String = text
        .trim()
        .chars()
        .take(ERROR_BODY_SHOWN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > ERROR_BODY_SHOWN {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_body_frames_each_chunk_with_its_length() {
        let parts = [
            Bytes::from_static(b"\x08\x02ab"),
            Bytes::from_static(b"xyz"),
        ];
        let (body, content_type) = encode_multipart(&parts, "BOUNDARY");
        assert_eq!(content_type, "multipart/mixed; boundary=BOUNDARY");
        let expected = b"--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\x08\x02ab\r\n\
--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nxyz\r\n\
--BOUNDARY--\r\n";
        assert_eq!(&body[..], &expected[..]);
    }

    #[test]
    fn multipart_boundaries_differ_per_request() {
        let upload = Upload::Multipart(vec![Bytes::from_static(b"a")]);
        let (_, first) = upload.encode();
        let (_, second) = upload.encode();
        assert_ne!(first, second);
        assert!(
            first
                .to_str()
                .unwrap()
                .starts_with("multipart/mixed; boundary=chunk-proxy-")
        );
    }

    #[test]
    fn single_uploads_are_sent_as_is() {
        let upload = Upload::Single(Bytes::from_static(b"\x08\x02"));
        let (body, content_type) = upload.encode();
        assert_eq!(&body[..], b"\x08\x02");
        assert_eq!(content_type, "application/octet-stream");
        assert_eq!(upload.chunk_count(), 1);
        assert_eq!(upload.payload_bytes(), 2);
    }

    #[test]
    fn failures_read_like_memfaults_documentation() {
        let failure = Failure::Status {
            status: StatusCode::FORBIDDEN,
            body: "Invalid project key".into(),
            retry_after: None,
        };
        assert_eq!(
            failure.to_string(),
            "HTTP 403 Forbidden (project key missing or invalid): Invalid project key"
        );
        assert_eq!(failure.class(), "Rejected");
        let failure = Failure::Status {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: String::new(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            failure.to_string(),
            "HTTP 429 Too Many Requests (rate limited), Retry-After 30s"
        );
        assert_eq!(failure.class(), "RateLimited");
    }

    #[test]
    fn error_bodies_are_shortened_and_flattened() {
        let long = format!("line one\nline two {}", "x".repeat(500));
        let shown = shown_body(long.as_bytes());
        assert!(shown.starts_with("line one line two"));
        assert!(shown.ends_with('…'));
        assert_eq!(shown.chars().count(), ERROR_BODY_SHOWN + 1);
        assert_eq!(shown_body(b"  \xff ok "), "\u{fffd} ok");
    }
}
