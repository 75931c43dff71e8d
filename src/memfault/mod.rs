//! The Memfault chunks API client: one keep-alive HTTP client, retries bounded by a deadline.
//!
//! `client` speaks HTTP and decides when to try again, `multipart` frames what a request
//! carries, and `failure` names what went wrong in words fit for a log line or Lambda's console.

mod client;
mod failure;
mod multipart;

pub use client::{ClientInitError, Delivery, MemfaultClient};
pub use failure::{Concern, Failure, GiveUpReason, UploadError};
pub use multipart::Upload;
