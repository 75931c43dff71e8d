//! What Memfault's answers mean, read in one place (memfaultd's `retriable_error.rs` is the
//! model): [`classify`] says whom a status concerns, [`Failure::class`] names it for metrics, and
//! [`UploadError::error_type`] gives Lambda's words for it; and why an upload did not deliver, in
//! words fit for a log line and Lambda's console.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use thiserror::Error;

use crate::http_client::{error_chain, shown_body};
use crate::routing::ProjectKey;

/// Memfault's status, read once: accepted, or a failure and whom it concerns. Memfault documents
/// 429, 503 and 529 as "retry after Retry-After"; other 5xx are the server's fault alike, and 408
/// means the server gave up waiting for us: all may pass. A redirect (the chunks URL is not the
/// API's), 401/403 (key missing, wrong or revoked), 404/405 (no such endpoint) and 407 (a proxy
/// wants credentials) blame the project key or the URL. Every other status says the request
/// itself is wrong.
pub(crate) fn classify(status: StatusCode) -> Result<(), Concern> {
    if status.is_success() {
        Ok(())
    } else if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Err(Concern::Transient)
    } else if status.is_redirection() || matches!(status.as_u16(), 401 | 403 | 404 | 405 | 407) {
        Err(Concern::Configuration)
    } else {
        Err(Concern::Request)
    }
}

/// Why one attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An answer that was not a success, with whom [`classify`] says it concerns.
    Status {
        status: StatusCode,
        concern: Concern,
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
    /// An answer that was not a success. The body is the upstream's text, and proxies and
    /// firewalls in front of Memfault may repeat the request's headers in it: the key the request
    /// carried is scrubbed out before the text is shortened, so that no part of it survives a cut.
    pub(super) fn from_answer(
        (status, concern): (StatusCode, Concern),
        retry_after: Option<Duration>,
        body: &[u8],
        key: &ProjectKey,
    ) -> Self {
        Self::Status {
            status,
            concern,
            body: shown_body(&key.scrub(&String::from_utf8_lossy(body))),
            retry_after,
        }
    }

    /// The request did not get an answer. The transport's words are scrubbed too: they are not
    /// ours either.
    pub(super) fn from_transport(
        error: &hyper_util::client::legacy::Error,
        key: &ProjectKey,
    ) -> Self {
        let reason = key.scrub(&error_chain(error)).into_owned();
        if error.is_connect() {
            Self::Connect(reason)
        } else {
            Self::Connection(reason)
        }
    }

    /// Whom the failure concerns: a request without an answer may pass.
    pub(crate) fn concern(&self) -> Concern {
        match self {
            Self::Status { concern, .. } => *concern,
            Self::Connect(_) | Self::Connection(_) | Self::Timeout(_) => Concern::Transient,
        }
    }

    /// A short, stable name for metrics.
    pub(crate) fn class(&self) -> &'static str {
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
                ..
            } => {
                write!(f, "HTTP {status} ({})", status_meaning(*status))?;
                if let Some(wait) = retry_after {
                    write!(f, ", Retry-After {}", Seconds(*wait))?;
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
pub(crate) enum GiveUpReason {
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
                "Memfault asked to wait {}, past the invocation deadline",
                Seconds(*wait)
            ),
        }
    }
}

#[derive(Debug, Clone, Error)]
pub(crate) enum UploadError {
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
    pub(crate) fn attempts(&self) -> u32 {
        match self {
            Self::Rejected { attempts, .. } | Self::GaveUp { attempts, .. } => *attempts,
            Self::NoTimeLeft => 0,
        }
    }

    /// A short, stable name for metrics.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Self::Rejected { failure, .. } | Self::GaveUp { last: failure, .. } => failure.class(),
            Self::NoTimeLeft => "Deadline",
        }
    }

    /// Who the failure concerns, which decides what happens next (docs/delivery.md): a refusal
    /// whom its answer concerns; giving up, or no time to try, Memfault's availability.
    pub(crate) fn concern(&self) -> Concern {
        match self {
            Self::Rejected { failure, .. } => failure.concern(),
            Self::GaveUp { .. } | Self::NoTimeLeft => Concern::Transient,
        }
    }

    /// Lambda's `errorType` for it: `Retryable.Upstream<Class>` for failures that may pass,
    /// `Retryable.UpstreamConfiguration` for a key or URL Memfault refuses,
    /// `Permanent.UpstreamRejected` for a refused chunk.
    pub(crate) fn error_type(&self) -> String {
        match self.concern() {
            Concern::Request => "Permanent.UpstreamRejected".to_owned(),
            Concern::Configuration => "Retryable.UpstreamConfiguration".to_owned(),
            Concern::Transient => format!("Retryable.Upstream{}", self.class()),
        }
    }

    pub(crate) fn status(&self) -> Option<StatusCode> {
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

/// What an upload's failure says about where the fault lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Concern {
    /// Memfault refused what the request carried (400, 413, 415, 422, ...): one of its chunks,
    /// found by sending fewer at a time, will be refused whenever it is sent.
    Request,
    /// Memfault refused who sent it or where (401, 403, 404, a redirect): every request with
    /// the same key or URL fails alike until a person fixes the setting.
    Configuration,
    /// Memfault was down, slow or rate limiting, or the deadline came: later may work.
    Transient,
}

/// A wait a server asked for, in whole seconds; `Duration::MAX` stands for more than can be counted.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Duration::MAX {
            write!(f, "more than {}s", u64::MAX)
        } else {
            write!(f, "{}s", self.0.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_like_memfaults_documentation() {
        let failure = Failure::Status {
            status: StatusCode::FORBIDDEN,
            concern: Concern::Configuration,
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
            concern: Concern::Transient,
            body: String::new(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            failure.to_string(),
            "HTTP 429 Too Many Requests (rate limited), Retry-After 30s"
        );
        assert_eq!(failure.class(), "RateLimited");
        let reason = GiveUpReason::RetryAfterBeyondDeadline(Duration::MAX);
        assert_eq!(
            reason.to_string(),
            "Memfault asked to wait more than 18446744073709551615s, past the invocation deadline"
        );
    }

    #[test]
    fn refusals_blame_the_request_or_the_configuration() {
        let rejected = |code: u16| {
            let status = StatusCode::from_u16(code).unwrap();
            UploadError::Rejected {
                failure: Failure::from_answer(
                    (status, classify(status).unwrap_err()),
                    None,
                    b"",
                    &"Key".parse().unwrap(),
                ),
                attempts: 1,
            }
        };
        for code in [400, 409, 411, 413, 415, 422] {
            assert_eq!(rejected(code).concern(), Concern::Request, "{code}");
        }
        for code in [301, 302, 307, 401, 403, 404, 405, 407] {
            assert_eq!(rejected(code).concern(), Concern::Configuration, "{code}");
        }
        let gave_up = UploadError::GaveUp {
            reason: GiveUpReason::AttemptsExhausted,
            last: Failure::Timeout(Duration::from_secs(1)),
            attempts: 3,
        };
        assert_eq!(gave_up.concern(), Concern::Transient);
        assert_eq!(UploadError::NoTimeLeft.concern(), Concern::Transient);
    }

    #[test]
    fn which_statuses_may_pass_and_which_blame_the_request_or_the_configuration() {
        let concern = |code: u16| classify(StatusCode::from_u16(code).unwrap());
        for code in [200, 202, 204] {
            assert_eq!(concern(code), Ok(()), "{code}");
        }
        for code in [429, 408, 500, 502, 503, 504, 529] {
            assert_eq!(concern(code), Err(Concern::Transient), "{code}");
        }
        for code in [301, 302, 307, 401, 403, 404, 405, 407] {
            assert_eq!(concern(code), Err(Concern::Configuration), "{code}");
        }
        for code in [400, 409, 411, 413, 415, 422] {
            assert_eq!(concern(code), Err(Concern::Request), "{code}");
        }
    }

    /// Every `FailureClass` the metrics can carry is one docs/configuration.md lists.
    #[test]
    fn every_failure_class_is_documented() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let answered = |code: u16| {
            let status = StatusCode::from_u16(code).unwrap();
            let concern = classify(status).unwrap_err();
            Failure::from_answer((status, concern), None, b"", &"Key".parse().unwrap())
        };
        let failures = [
            answered(429),
            answered(503),
            answered(400),
            Failure::Connect(String::new()),
            Failure::Connection(String::new()),
            Failure::Timeout(Duration::from_secs(1)),
        ];
        let classes = failures.iter().map(Failure::class);
        for class in classes.chain([UploadError::NoTimeLeft.class()]) {
            assert!(docs.contains(&format!("`{class}`")), "FailureClass {class}");
        }
    }

    #[test]
    fn error_bodies_are_shortened_and_flattened() {
        let long = format!("line one\nline two {}", "x".repeat(500));
        let shown = shown_body(&long);
        assert!(shown.starts_with("line one line two"));
        assert!(shown.ends_with('…'));
        assert_eq!(
            shown.chars().count(),
            crate::http_client::ERROR_BODY_SHOWN + 1
        );
        assert_eq!(shown_body("  \u{fffd} ok "), "\u{fffd} ok");
    }

    #[test]
    fn a_key_in_an_answer_is_scrubbed_before_the_body_is_shortened() {
        const KEY: &str = "0123456789abcdef0123456789abcdef";
        let key: ProjectKey = KEY.parse().unwrap();
        // The key straddles the point where the shown body is cut.
        let body = format!(
            "{}{KEY} and {}",
            "x".repeat(crate::http_client::ERROR_BODY_SHOWN - 10),
            KEY.to_uppercase()
        );
        let status = (StatusCode::FORBIDDEN, Concern::Configuration);
        let failure = Failure::from_answer(status, None, body.as_bytes(), &key);
        let shown = failure.to_string();
        assert!(shown.contains("0123…"), "{shown}");
        assert!(!shown.to_lowercase().contains(&KEY[..5]), "{shown}");
        let Failure::Status { body, .. } = failure else {
            panic!("a status failure");
        };
        assert!(!body.to_lowercase().contains("0123456789"), "{body}");
    }
}
