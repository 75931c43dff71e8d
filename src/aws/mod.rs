//! AWS as a place the function writes to: where ([`destination`]) and how ([`request`]).

mod destination;
mod request;

pub use destination::QuarantineQueueConfig;
pub(crate) use destination::{BucketUrl, QueueUrl};
pub(crate) use request::{AwsRequest, StoreError};
