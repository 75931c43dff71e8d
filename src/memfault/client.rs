//! The HTTP exchange with Memfault and the retry loop around it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use tokio::time::Instant;

use super::failure::{Concern, Failure, GiveUpReason, UploadError, classify};
use super::multipart::Upload;
use crate::config::{ChunksUrl, Config, TimeBudget};
use crate::http_client::{HttpClient, USER_AGENT_VALUE};
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::routing::{ProjectKey, Route};

const PROJECT_KEY_HEADER: &str = "Memfault-Project-Key";
const RESPONSE_BODY_LIMIT: usize = 64 * 1024;
/// How long an answer's body may take once its status line is in. Memfault's answers are a few
/// bytes sent with the status line, so a whole answer normally needs no further round trip.
/// 250 ms still allows one between distant AWS regions (assumed at most about 200 ms); a body
/// incomplete after that is not coming, and a fresh connection costs less than waiting longer.
const BODY_GRACE: Duration = Duration::from_millis(250);
/// Memfault accepted the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub status: StatusCode,
    pub attempts: u32,
    /// From the first request to the accepting answer, waits between attempts included.
    pub upstream: Duration,
}

struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Bytes,
}

/// Built once at init and shared by every invocation, on the function's one HTTP client, so
/// that consecutive chunks reuse one keep-alive connection instead of paying a TCP and TLS
/// handshake each.
#[derive(Clone)]
pub(crate) struct MemfaultClient {
    http: HttpClient,
    chunks_url: Arc<ChunksUrl>,
    retry: RetryPolicy,
    request_timeout: Duration,
    budget: TimeBudget,
}

impl MemfaultClient {
    pub(crate) fn new(http: HttpClient, config: &Config) -> Self {
        Self {
            http,
            chunks_url: Arc::new(config.chunks_url().clone()),
            retry: config.retry(),
            request_timeout: config.request_timeout(),
            budget: config.time_budget(),
        }
    }

    /// Posts `upload` for `route` until Memfault accepts it, refuses it, the attempts run out,
    /// or the next try would end after the upload bound ([`TimeBudget::upload_bound`]).
    pub(crate) async fn upload(
        &self,
        route: &Route,
        upload: &Upload,
        deadline: Instant,
    ) -> Result<Delivery, UploadError> {
        let give_up_at = self.budget.upload_bound(deadline);
        self.post_until(route, upload, give_up_at, self.retry.max_attempts)
            .await
    }

    /// One request to learn whether Memfault is up, made after the invocation's uploads, by
    /// [`TimeBudget::probe_bound`].
    pub(crate) async fn probe(
        &self,
        route: &Route,
        upload: &Upload,
        deadline: Instant,
    ) -> Result<Delivery, UploadError> {
        let give_up_at = self.budget.probe_bound(deadline);
        self.post_until(route, upload, give_up_at, 1).await
    }

    async fn post_until(
        &self,
        route: &Route,
        upload: &Upload,
        give_up_at: Instant,
        max_attempts: u32,
    ) -> Result<Delivery, UploadError> {
        let started = Instant::now();
        let (body, content_type) = upload.encode();
        let uri = self.chunks_url.for_device(&route.device_serial);
        let (mut attempts, mut allowed_attempts) = (0, max_attempts);
        let (mut fresh_connection_retry_used, mut last) = (false, None);
        loop {
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(out_of_time(last, attempts));
            }
            attempts += 1;
            let request = post(&uri, &content_type, &route.project_key, &body);
            let attempt_timeout = self.request_timeout.min(remaining);
            let answer = self
                .attempt(request, attempt_timeout, &route.project_key)
                .await;
            let failure = match answer_or_failure(answer, &route.project_key) {
                Ok(status) => {
                    return Ok(Delivery {
                        status,
                        attempts,
                        upstream: started.elapsed(),
                    });
                }
                Err(failure) if failure.concern() != Concern::Transient => {
                    return Err(UploadError::Rejected { failure, attempts });
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
            let delay = self.wait_before_retry(
                &failure,
                (attempts, allowed_attempts),
                stale_connection_suspected,
                give_up_at,
            )?;
            last = Some(failure);
            tracing::debug!(device_serial = %route.device_serial, attempt = attempts,
                delay_ms = delay.as_millis() as u64, "retrying upload");
            tokio::time::sleep(delay).await;
        }
    }

    /// How long to wait before the next attempt after `failure` (no time `at_once`), or the
    /// error to give up with: the attempts are used up, or the wait would end past `give_up_at`.
    /// Either way the error carries this real failure, not "no time left", which is for uploads
    /// never tried.
    fn wait_before_retry(
        &self,
        failure: &Failure,
        (attempts, allowed_attempts): (u32, u32),
        at_once: bool,
        give_up_at: Instant,
    ) -> Result<Duration, UploadError> {
        let give_up = |reason| UploadError::GaveUp {
            reason,
            last: failure.clone(),
            attempts,
        };
        if attempts >= allowed_attempts {
            return Err(give_up(GiveUpReason::AttemptsExhausted));
        }
        let retry_after = match failure {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let delay = if at_once {
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
            return Err(give_up(reason));
        }
        tracing::debug!(failure = %failure, "upload attempt failed");
        Ok(delay)
    }

    /// One request. Its outcome is decided by the status line; the body is only read so that
    /// the connection can serve again, and, for a refusal, to say what Memfault objected to.
    async fn attempt(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
        key: &ProjectKey,
    ) -> Result<Answer, Failure> {
        let sent = Instant::now();
        let response = tokio::time::timeout(timeout, self.http.request(request))
            .await
            .map_err(|_| Failure::Timeout(timeout))?
            .map_err(|error| Failure::from_transport(&error, key))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let within = BODY_GRACE.min(timeout.saturating_sub(sent.elapsed()));
        let body = drain(response.into_body(), within).await;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }
}

/// The error of an upload that reached its bound: its last real failure when it made attempts
/// (a sleep can overrun the bound), "no time left" only when it made none.
fn out_of_time(last: Option<Failure>, attempts: u32) -> UploadError {
    match last {
        Some(last) => UploadError::GaveUp {
            reason: GiveUpReason::DeadlineReached,
            last,
            attempts,
        },
        None => UploadError::NoTimeLeft,
    }
}

fn post(
    uri: &str,
    content_type: &HeaderValue,
    key: &ProjectKey,
    body: &Bytes,
) -> Request<Full<Bytes>> {
    Request::post(uri)
        .header(CONTENT_TYPE, content_type.clone())
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(PROJECT_KEY_HEADER, key.expose())
        .body(Full::new(body.clone()))
        // Device serials and keys are validated to [A-Za-z0-9_-] and the base URL at init.
        .expect("validated parts make a valid request")
}

/// A success status, or the failure of an answer (or of no answer).
fn answer_or_failure(
    answer: Result<Answer, Failure>,
    key: &ProjectKey,
) -> Result<StatusCode, Failure> {
    let answer = answer?;
    match classify(answer.status) {
        Ok(()) => Ok(answer.status),
        Err(concern) => Err(Failure::from_answer(
            (answer.status, concern),
            answer.retry_after,
            &answer.body,
            key,
        )),
    }
}

/// Reads a response body to its end, keeping its first `RESPONSE_BODY_LIMIT` bytes, for at most
/// `within`. A body read to its end hands the connection back to the pool. One that stalls,
/// trickles, breaks off or runs past the limit is dropped unfinished, which closes its
/// connection: the next request opens a fresh one instead of reading the rest of this answer.
async fn drain(mut body: Incoming, within: Duration) -> Bytes {
    // An empty answer (`Content-Length: 0`, as most of Memfault's are) is complete already:
    // no timer for it.
    if body.is_end_stream() {
        return Bytes::new();
    }
    let mut kept = BytesMut::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let room = RESPONSE_BODY_LIMIT - kept.len();
            kept.extend_from_slice(&data[..data.len().min(room)]);
            if data.len() > room {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    kept.freeze()
}
