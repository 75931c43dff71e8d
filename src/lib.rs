//! Forwards Memfault chunks that devices publish over AWS IoT Core MQTT to the Memfault chunks
//! API, from an AWS Lambda function invoked by an IoT topic rule, an SQS queue or a Kinesis stream.

pub mod aws;
pub mod config;
pub mod delivery;
pub mod event;
pub mod failure_bucket;
pub mod failure_queue;
pub mod handler;
pub mod http_client;
pub mod init_error;
pub mod memfault;
pub mod observability;
pub mod quarantine;
pub mod redact;
pub mod retry;
pub mod routing;
pub mod settled;
pub mod source;
pub mod url;

pub use config::Config;
pub use handler::{Forwarder, Response};
