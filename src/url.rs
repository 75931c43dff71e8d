//! The plain http(s) URLs the configuration accepts: Memfault's chunks API, and the AWS
//! endpoints the quarantine is reached at.

use std::fmt;
use std::str::FromStr;

use http::Uri;

use crate::routing::DeviceSerial;

/// Where chunks are posted: `{scheme}://{authority}{path_prefix}/api/v0/chunks/{serial}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunksUrl {
    scheme: String,
    authority: String,
    path_prefix: String,
}

impl ChunksUrl {
    pub fn for_device(&self, serial: &DeviceSerial) -> String {
        format!(
            "{}://{}{}/api/v0/chunks/{}",
            self.scheme, self.authority, self.path_prefix, serial
        )
    }
}

impl fmt::Display for ChunksUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme, self.authority, self.path_prefix
        )
    }
}

impl FromStr for ChunksUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = PlainUrl::parse(text)?;
        Ok(Self {
            scheme: url.scheme,
            authority: url.authority,
            path_prefix: url.path.trim_end_matches('/').to_owned(),
        })
    }
}

/// An http(s) URL with a host and nothing that could carry a secret or change the request:
/// no credentials, no query, no fragment.
pub(crate) struct PlainUrl {
    pub scheme: String,
    pub authority: String,
    pub path: String,
}

impl PlainUrl {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .parse()
            .map_err(|error| format!("not a URL: {error}"))?;
        let scheme = match uri.scheme_str() {
            Some(scheme @ ("https" | "http")) => scheme.to_owned(),
            Some(other) => return Err(format!("scheme {other:?} is not http or https")),
            None => return Err("needs a scheme, e.g. https://chunks.memfault.com".into()),
        };
        let authority = uri.authority().ok_or("has no host")?;
        if authority.as_str().contains('@') {
            return Err("must not carry credentials".into());
        }
        if authority.host().is_empty() {
            return Err("has no host".into());
        }
        if uri.query().is_some() || text.contains('#') {
            return Err("must not have a query or fragment".into());
        }
        Ok(Self {
            scheme,
            authority: authority.as_str().to_owned(),
            path: uri.path().to_owned(),
        })
    }
}
