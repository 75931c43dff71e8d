//! Forwards Memfault chunks that devices publish over AWS IoT Core MQTT to the Memfault chunks
//! API, from an AWS Lambda function invoked by an IoT topic rule or an SQS queue.

pub mod config;
pub mod event;
pub mod handler;
pub mod init_error;
pub mod memfault;
pub mod observability;
pub mod retry;
pub mod routing;

pub use config::Config;
pub use handler::{Forwarder, Response};
