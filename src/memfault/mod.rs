//! The Memfault chunks API client: one keep-alive HTTP client, retries bounded by a deadline.
//!
//! `client` speaks HTTP and decides when to try again, `multipart` frames what a request
//! carries, and `failure` names what went wrong in words fit for a log line or Lambda's console.

mod client;
mod failure;
mod multipart;

pub(crate) use client::Delivery;
pub(crate) use client::MemfaultClient;
pub(crate) use failure::{Concern, UploadError};
#[cfg(test)]
pub(crate) use failure::{Failure, GiveUpReason, classify};
pub(crate) use multipart::Upload;
