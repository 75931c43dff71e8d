//! AWS as a place the function writes to: where ([`destination`]) and how ([`request`]).

mod destination;
mod request;

pub use destination::{BucketUrl, FailureQueueConfig, QueueUrl};
pub use request::{AwsRequest, StoreError};
