//! Forwards Memfault chunks that devices publish over AWS IoT Core MQTT to the Memfault chunks
//! API, from an AWS Lambda function invoked by an IoT topic rule, an SQS queue or a Kinesis stream.
//!
//! The modules are private and point one way, from the Lambda handler down to plain values
//! (docs/development.md, "Source layout"); what the binary, the tests and the benchmark use is
//! re-exported here, so the compiler reports anything else that nothing uses.

mod aws;
mod config;
mod delivery;
mod event;
mod handler;
mod http_client;
mod init_error;
mod memfault;
mod observability;
mod quarantine;
mod quarantine_queue;
mod redact;
mod retry;
mod routing;
mod settled;
mod source;
mod source_kind;
mod stream_failure_bucket;
mod url;

pub use config::{ChunksUrl, Config, DEFAULT_UPLOAD_CONCURRENCY, MIN_DEADLINE_MARGIN};
pub use event::parse_rule_event;
pub use handler::Forwarder;
pub use http_client::ClientInitError;
pub use http_client::USER_AGENT_VALUE;
pub use init_error::report_init_error;
pub use observability::{InvocationMetrics, emf_documents, init_logging};
pub use redact::redact;
pub use routing::{Claims, KeySource, ProjectKey, ProjectKeys, Router, TopicPattern};
pub use settled::SettledMemory;
pub use source::{Delivered, DeliveredEarlier, ForwardError, Response, SetAside};
