//! The core on its own: a scripted uploader answers by device and by the chunks a request
//! carries, and records what it was asked, so that grouping, order, splitting, the outage stop,
//! the memory of settled records, the deadline and the stall limit are seen without a socket.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::time::Instant;

use super::*;
use crate::memfault::{Failure, GiveUpReason, classify};

/// What the script answers for one request.
#[derive(Clone, Copy)]
enum Answer {
    Accept,
    /// Memfault answered with this status, after one attempt.
    Status(u16),
    NoTimeLeft,
}

type Rule = Box<dyn Fn(&Route, &[Bytes]) -> Answer + Send + Sync>;

/// An uploader that answers by a rule and remembers each request: device serial and chunks.
struct Script {
    rule: Rule,
    /// Whether the next probe fails with a 503, whatever the rule says.
    probe_fails: Box<dyn Fn() -> bool + Send + Sync>,
    requests: Mutex<Vec<(String, Vec<Bytes>)>>,
    /// Each probe's device and chunk.
    probes: Mutex<Vec<String>>,
}

impl Script {
    fn new(rule: impl Fn(&Route, &[Bytes]) -> Answer + Send + Sync + 'static) -> Self {
        Self::with_probe_rule(rule, || false)
    }

    fn with_probe_rule(
        rule: impl Fn(&Route, &[Bytes]) -> Answer + Send + Sync + 'static,
        probe_fails: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            rule: Box::new(rule),
            probe_fails: Box::new(probe_fails),
            requests: Mutex::new(Vec::new()),
            probes: Mutex::new(Vec::new()),
        }
    }

    fn requests(&self) -> Vec<(String, Vec<String>)> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .map(|(serial, chunks)| (serial.clone(), chunks.iter().map(text).collect()))
            .collect()
    }

    fn answer(&self, route: &Route, upload: &Upload) -> Result<Delivery, UploadError> {
        self.answer_with((self.rule)(route, upload.chunks()))
    }

    fn answer_with(&self, answer: Answer) -> Result<Delivery, UploadError> {
        let status = match answer {
            Answer::Accept => {
                return Ok(Delivery {
                    status: StatusCode::ACCEPTED,
                    attempts: 1,
                    upstream: Duration::from_millis(1),
                });
            }
            Answer::NoTimeLeft => return Err(UploadError::NoTimeLeft),
            Answer::Status(status) => StatusCode::from_u16(status).unwrap(),
        };
        let failure = Failure::Status {
            status,
            concern: classify(status).unwrap_err(),
            body: String::new(),
            retry_after: None,
        };
        Err(if status.is_server_error() {
            UploadError::GaveUp {
                reason: GiveUpReason::AttemptsExhausted,
                last: failure,
                attempts: 1,
            }
        } else {
            UploadError::Rejected {
                failure,
                attempts: 1,
            }
        })
    }
}

impl Uploader for Script {
    async fn upload(
        &self,
        route: &Route,
        upload: &Upload,
        _deadline: Instant,
    ) -> Result<Delivery, UploadError> {
        let chunks = upload.chunks().to_vec();
        let serial = route.device_serial.to_string();
        self.requests.lock().unwrap().push((serial, chunks));
        self.answer(route, upload)
    }

    async fn probe(
        &self,
        route: &Route,
        upload: &Upload,
        _deadline: Instant,
    ) -> Result<Delivery, UploadError> {
        let probed = format!("{}:{}", route.device_serial, text(&upload.chunks()[0]));
        self.probes.lock().unwrap().push(probed);
        if (self.probe_fails)() {
            return self.answer_with(Answer::Status(503));
        }
        self.answer(route, upload)
    }
}

fn text(chunk: &Bytes) -> String {
    String::from_utf8_lossy(chunk).into_owned()
}

fn settings() -> Settings {
    Settings {
        batch_max_chunks: NonZeroUsize::new(500).unwrap(),
        upload_concurrency: NonZeroUsize::new(4).unwrap(),
        stall_limit: Duration::from_millis(40),
    }
}

fn deliverer(script: Script, settings: Settings) -> Deliverer<Script> {
    Deliverer::new(script, settings)
}

fn route(serial: &str, key: &str) -> Route {
    Route {
        device_serial: serial.parse().unwrap(),
        project_key: key.parse().unwrap(),
    }
}

/// A chunk for `serial` under project key `Key`; its bytes are its name.
fn chunk(serial: &str, name: &str) -> Item {
    chunk_of(serial, "Key", name)
}

fn chunk_of(serial: &str, key: &str, name: &str) -> Item {
    Item {
        content: Ok(Routed {
            route: route(serial, key),
            payload: Bytes::from(name.to_owned()),
        }),
        key: None,
        arrived: None,
    }
}

/// The same chunk, named for the memory of settled records by `record`.
fn remembered(deliverer: &Deliverer<Script>, serial: &str, name: &str, record: &str) -> Item {
    Item {
        key: Some(deliverer.record_key(&["test", record])),
        ..chunk(serial, name)
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

async fn run(deliverer: &Deliverer<Script>, items: Vec<Item>, source: SourceKind) -> Vec<String> {
    let mut metrics = InvocationMetrics::default();
    let outcomes = deliverer.deliver(items, source, soon(), &mut metrics).await;
    outcomes.iter().map(class).collect()
}

/// An outcome in a word or two, for assertions that read like the table in docs/delivery.md.
fn class(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered(_) => "delivered".into(),
        Outcome::Earlier(Settlement::Delivered) => "delivered earlier".into(),
        Outcome::Earlier(Settlement::SetAside) => "set aside earlier".into(),
        Outcome::SetAside(Undeliverable::Refused(_)) => "refused".into(),
        Outcome::SetAside(Undeliverable::Rejected(_)) => "rejected".into(),
        Outcome::SetAside(Undeliverable::Stalled(_)) => "stalled".into(),
        Outcome::Kept(Kept::Failed(_)) => "failed".into(),
        Outcome::Kept(Kept::BehindFailure) => "behind failure".into(),
        Outcome::Kept(Kept::NotStarted(reason)) => format!("not started: {reason:?}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[tokio::test]
async fn a_devices_chunks_go_in_order_in_requests_of_at_most_the_batch_limit() {
    let script = Script::new(|_, _| Answer::Accept);
    let core = deliverer(
        script,
        Settings {
            batch_max_chunks: NonZeroUsize::new(2).unwrap(),
            ..settings()
        },
    );
    let items = vec![
        chunk("A", "a0"),
        chunk("B", "b0"),
        chunk("A", "a1"),
        chunk("A", "a2"),
    ];

    let outcomes = run(&core, items, SourceKind::Sqs).await;

    assert_eq!(outcomes, strings(&["delivered"; 4]));
    let mut requests = core.uploader.requests();
    requests.sort();
    assert_eq!(
        requests,
        vec![
            ("A".into(), strings(&["a0", "a1"])),
            ("A".into(), strings(&["a2"])),
            ("B".into(), strings(&["b0"])),
        ]
    );
}

#[tokio::test]
async fn a_refused_request_is_split_until_the_refused_chunk_stands_alone() {
    let bad = |_: &Route, chunks: &[Bytes]| {
        if chunks.iter().any(|chunk| &chunk[..] == b"bad") {
            Answer::Status(400)
        } else {
            Answer::Accept
        }
    };
    let core = deliverer(Script::new(bad), settings());
    let items = ["a0", "a1", "bad", "a3"]
        .iter()
        .map(|name| chunk("A", name))
        .collect();

    let outcomes = run(&core, items, SourceKind::Sqs).await;

    assert_eq!(
        outcomes,
        strings(&["delivered", "delivered", "rejected", "delivered"])
    );
    let requests: Vec<Vec<String>> = core
        .uploader
        .requests()
        .into_iter()
        .map(|(_, chunks)| chunks)
        .collect();
    assert_eq!(
        requests,
        vec![
            strings(&["a0", "a1", "bad", "a3"]),
            strings(&["a0", "a1"]),
            strings(&["bad", "a3"]),
            strings(&["bad"]),
            strings(&["a3"]),
        ]
    );
}

#[tokio::test]
async fn a_transient_failure_keeps_the_device_and_holds_back_its_later_chunks_only() {
    let failing = |route: &Route, chunks: &[Bytes]| {
        if route.device_serial.as_str() == "A" && &chunks[0][..] == b"a1" {
            Answer::Status(503)
        } else {
            Answer::Accept
        }
    };
    let core = deliverer(
        Script::new(failing),
        Settings {
            batch_max_chunks: NonZeroUsize::new(1).unwrap(),
            ..settings()
        },
    );
    let items = vec![
        chunk("A", "a0"),
        chunk("A", "a1"),
        chunk("B", "b0"),
        chunk("A", "a2"),
    ];

    let outcomes = run(&core, items, SourceKind::Sqs).await;

    assert_eq!(
        outcomes,
        strings(&["delivered", "failed", "delivered", "behind failure"])
    );
    let sent_for_a: Vec<Vec<String>> = core
        .uploader
        .requests()
        .into_iter()
        .filter(|(serial, _)| serial == "A")
        .map(|(_, chunks)| chunks)
        .collect();
    assert_eq!(sent_for_a, vec![strings(&["a0"]), strings(&["a1"])]);
}

#[tokio::test]
async fn an_outage_stops_further_devices_from_starting() {
    let core = deliverer(
        Script::new(|_, _| Answer::Status(500)),
        Settings {
            upload_concurrency: NonZeroUsize::new(2).unwrap(),
            ..settings()
        },
    );
    let items = ["A", "B", "C", "D", "E"]
        .iter()
        .map(|serial| chunk(serial, "x"))
        .collect();

    let outcomes = run(&core, items, SourceKind::Sqs).await;

    assert_eq!(&outcomes[..2], strings(&["failed", "failed"]));
    assert_eq!(outcomes[2..], strings(&["not started: Outage"; 3]));
    assert_eq!(
        core.uploader.requests().len(),
        2,
        "one request per device at once"
    );
}

#[tokio::test]
async fn a_refused_key_stops_that_projects_devices_and_no_other() {
    let refused = |route: &Route, _: &[Bytes]| {
        if route.project_key.expose() == "Refused" {
            Answer::Status(403)
        } else {
            Answer::Accept
        }
    };
    let core = deliverer(
        Script::new(refused),
        Settings {
            upload_concurrency: NonZeroUsize::new(1).unwrap(),
            ..settings()
        },
    );
    let items = vec![
        chunk_of("A", "Refused", "a0"),
        chunk_of("B", "Refused", "b0"),
        chunk_of("C", "Good", "c0"),
    ];

    let outcomes = run(&core, items, SourceKind::Kinesis).await;

    assert_eq!(
        outcomes,
        strings(&["failed", "not started: ProjectRefused", "delivered"])
    );
}

#[tokio::test]
async fn records_settled_earlier_are_answered_from_memory_without_a_request() {
    let core = deliverer(Script::new(|_, _| Answer::Accept), settings());
    let first = vec![remembered(&core, "A", "a0", "r0")];
    assert_eq!(
        run(&core, first, SourceKind::Sqs).await,
        strings(&["delivered"])
    );
    let set_aside = core.record_key(&["test", "r1"]);
    core.memory.remember(set_aside, Settlement::SetAside);

    let again = vec![
        remembered(&core, "A", "a0", "r0"),
        remembered(&core, "A", "a1", "r1"),
        remembered(&core, "A", "a2", "r2"),
    ];
    let outcomes = run(&core, again, SourceKind::Sqs).await;

    assert_eq!(
        outcomes,
        strings(&["delivered earlier", "set aside earlier", "delivered"])
    );
    let requests = core.uploader.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1].1, strings(&["a2"]));
}

#[tokio::test]
async fn items_refused_before_upload_are_set_aside_and_their_neighbours_delivered() {
    let core = deliverer(Script::new(|_, _| Answer::Accept), settings());
    let refused = Item {
        content: Err(Refusal::Event(crate::event::EventError::EmptyPayload)),
        key: None,
        arrived: None,
    };
    let items = vec![chunk("A", "a0"), refused, chunk("A", "a1")];

    let outcomes = run(&core, items, SourceKind::Kinesis).await;

    assert_eq!(outcomes, strings(&["delivered", "refused", "delivered"]));
    assert_eq!(
        core.uploader.requests().len(),
        1,
        "one request for both chunks"
    );
}

#[tokio::test]
async fn the_deadline_keeps_what_was_not_sent() {
    let calls = Mutex::new(0);
    let first_only = move |_: &Route, _: &[Bytes]| {
        let mut calls = calls.lock().unwrap();
        *calls += 1;
        if *calls == 1 {
            Answer::Accept
        } else {
            Answer::NoTimeLeft
        }
    };
    let core = deliverer(
        Script::new(first_only),
        Settings {
            batch_max_chunks: NonZeroUsize::new(1).unwrap(),
            ..settings()
        },
    );
    let items = vec![chunk("A", "a0"), chunk("A", "a1"), chunk("A", "a2")];

    let outcomes = run(&core, items, SourceKind::Kinesis).await;

    assert_eq!(
        outcomes,
        strings(&[
            "delivered",
            "not started: Deadline",
            "not started: Deadline"
        ])
    );
}

const STALL_LIMIT: Duration = Duration::from_millis(200);

/// Runs invocations an eighth of the stall limit apart (a held shard is resent at once) until
/// `first` of them is no longer "failed", and says after how long since the first it changed,
/// and to what. The tests that use it run on tokio's paused clock, which moves only when every
/// task waits: the stall rule's windows are tens of milliseconds here, and a busy machine's
/// scheduling would stretch them into outages.
async fn until_not_failing(
    core: &Deliverer<Script>,
    items: impl Fn() -> Vec<Item>,
    source: SourceKind,
) -> (Duration, Vec<String>) {
    let started = Instant::now();
    for _ in 0..24 {
        let outcomes = run(core, items(), source).await;
        if outcomes[0] != "failed" {
            return (started.elapsed(), outcomes);
        }
        tokio::time::sleep(STALL_LIMIT / 8).await;
    }
    (started.elapsed(), strings(&["failed"]))
}

fn stalling() -> Settings {
    Settings {
        stall_limit: STALL_LIMIT,
        ..settings()
    }
}

/// Device A always fails; every other device is accepted, but for probes that `probe_fails`.
fn a_fails(probe_fails: impl Fn(usize) -> bool + Send + Sync + 'static) -> Script {
    let probes = std::sync::atomic::AtomicUsize::new(0);
    Script::with_probe_rule(
        |route: &Route, _: &[Bytes]| {
            if route.device_serial.as_str() == "A" {
                Answer::Status(500)
            } else {
                Answer::Accept
            }
        },
        move || {
            let probe = probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            probe_fails(probe)
        },
    )
}

/// A device that keeps failing while another delivers is set aside once the stall limit has
/// passed in healthy time, in a stream only.
#[tokio::test(start_paused = true)]
async fn a_device_failing_while_memfault_is_up_stalls_after_the_limit_in_a_stream() {
    let items = || vec![chunk("A", "a0"), chunk("B", "b0")];
    let core = deliverer(a_fails(|_| false), stalling());
    let (after, outcomes) = until_not_failing(&core, items, SourceKind::Kinesis).await;
    assert_eq!(outcomes, strings(&["stalled", "delivered"]));
    assert!(after >= STALL_LIMIT, "stalled after {after:?}");

    let core = deliverer(a_fails(|_| false), stalling());
    let (_, outcomes) = until_not_failing(&core, items, SourceKind::Sqs).await;
    assert_eq!(outcomes, strings(&["failed"]), "a queue holds nothing back");
}

/// The failing device's record, then twelve records of other devices delivered in the first
/// invocation and answered from memory after it.
fn held_batch(core: &Deliverer<Script>) -> Vec<Item> {
    let mut items = vec![chunk("A", "a0")];
    items.extend(
        (0..12).map(|n| remembered(core, &format!("B{n}"), &format!("b{n}"), &format!("b{n}"))),
    );
    items
}

/// With nothing else delivered in a held batch, records delivered earlier are re-posted, at
/// most one per probe interval (a tenth of the stall limit) and never the same one twice:
/// Memfault accepting them is the evidence that the failing device is stalled, not Memfault down.
#[tokio::test(start_paused = true)]
async fn probes_tell_a_stall_from_an_outage_each_chunk_once_a_few_per_stall_limit() {
    let core = deliverer(a_fails(|_| false), stalling());
    let (after, outcomes) =
        until_not_failing(&core, || held_batch(&core), SourceKind::Kinesis).await;

    assert_eq!(outcomes[0], "stalled");
    assert!(
        outcomes[1..]
            .iter()
            .all(|outcome| outcome == "delivered earlier"),
        "{outcomes:?}"
    );
    assert!(after >= STALL_LIMIT, "stalled after {after:?}");
    let delivered = core
        .uploader
        .requests()
        .iter()
        .filter(|(serial, _)| serial != "A")
        .count();
    assert_eq!(
        delivered, 12,
        "each delivered once, then answered from memory"
    );
    let probes = core.uploader.probes.lock().unwrap().clone();
    let distinct: std::collections::HashSet<&String> = probes.iter().collect();
    assert_eq!(
        distinct.len(),
        probes.len(),
        "a chunk probed twice: {probes:?}"
    );
    let most = (after.as_millis() / (STALL_LIMIT / 10).as_millis()) as usize + 1;
    assert!(probes.len() <= most, "{} probes in {after:?}", probes.len());
}

/// One failed probe among good ones is noise: the clock neither stops nor starts again.
#[tokio::test(start_paused = true)]
async fn a_failed_probe_among_good_ones_does_not_restart_the_clock() {
    let core = deliverer(a_fails(|probe| probe % 4 == 1), stalling());
    let (after, outcomes) =
        until_not_failing(&core, || held_batch(&core), SourceKind::Kinesis).await;
    assert_eq!(outcomes[0], "stalled", "after {after:?}");
    assert!(after >= STALL_LIMIT, "stalled after {after:?}");
    assert!(
        after < STALL_LIMIT * 2,
        "the failed probes restarted the clock: {after:?}"
    );
}

/// A batch that holds only the failing device's records is decided with chunks the environment
/// delivered in earlier invocations.
#[tokio::test(start_paused = true)]
async fn a_batch_of_the_failing_device_alone_is_decided_with_earlier_deliveries() {
    let core = deliverer(a_fails(|_| false), stalling());
    let others: Vec<Item> = (0..12)
        .map(|n| chunk(&format!("B{n}"), &format!("b{n}")))
        .collect();
    run(&core, others, SourceKind::Kinesis).await;
    let burst = || {
        (0..4)
            .map(|n| chunk("A", &format!("a{n}")))
            .collect::<Vec<_>>()
    };
    let (after, outcomes) = until_not_failing(&core, burst, SourceKind::Kinesis).await;
    assert_eq!(outcomes, strings(&["stalled"; 4]), "after {after:?}");
    assert!(!core.uploader.probes.lock().unwrap().is_empty());
}

/// When every device fails, Memfault is down: no clock runs, nothing stalls.
#[tokio::test(start_paused = true)]
async fn an_outage_stalls_nobody() {
    let core = deliverer(Script::new(|_, _| Answer::Status(500)), stalling());
    let items = || vec![chunk("A", "a0"), chunk("B", "b0")];
    let (_, outcomes) = until_not_failing(&core, items, SourceKind::Kinesis).await;
    assert_eq!(outcomes, strings(&["failed"]));
}
