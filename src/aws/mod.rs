//! AWS as a place the function writes to: where ([`destination`]) and how ([`request`]).

mod destination;
mod request;

pub(crate) use destination::{AwsIdentity, BucketUrl, QueueUrl};
pub(crate) use request::{AwsClient, AwsRequest, StoreError};
