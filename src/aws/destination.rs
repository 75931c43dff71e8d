//! Where the function's AWS writes go and as whom: the quarantine queue's and the stream failure bucket's
//! URLs and the execution role's identity. Plain values, parsed from the configuration.

use std::fmt;
use std::str::FromStr;

use aws_credential_types::Credentials;

use crate::url::PlainUrl;

/// `MEMFAULT_QUARANTINE_QUEUE_URL`: an SQS queue URL such as
/// `https://sqs.eu-west-1.amazonaws.com/123456789012/memfault-quarantine.fifo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueUrl {
    url: String,
    /// Where the JSON protocol's requests go: the queue URL's scheme and authority.
    pub(crate) endpoint: String,
    pub(crate) fifo: bool,
    account: String,
    name: String,
}

impl FromStr for QueueUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = PlainUrl::parse(text)?;
        let segments: Vec<&str> = url.path.trim_matches('/').split('/').collect();
        let [account, name] = segments[..] else {
            return Err("must end in /<account id>/<queue name>".into());
        };
        Ok(Self {
            url: text.to_owned(),
            endpoint: format!("{}://{}/", url.scheme, url.authority),
            fifo: name.ends_with(".fifo"),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl QueueUrl {
    /// Whether `arn` (an SQS record's `eventSourceARN`) names this queue.
    pub(crate) fn is_queue_arn(&self, arn: &str) -> bool {
        arn.starts_with("arn:") && arn.ends_with(&format!(":{}:{}", self.account, self.name))
    }
}

impl fmt::Display for QueueUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// `MEMFAULT_STREAM_FAILURE_BUCKET_URL`: where objects of the stream failure bucket are put, virtual-hosted
/// (`https://<bucket>.s3.<region>.amazonaws.com`) or path-style (`http://127.0.0.1:9000/<bucket>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BucketUrl {
    base: String,
}

impl FromStr for BucketUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = PlainUrl::parse(text)?;
        Ok(Self {
            base: format!(
                "{}://{}{}",
                url.scheme,
                url.authority,
                url.path.trim_end_matches('/')
            ),
        })
    }
}

impl BucketUrl {
    pub(crate) fn object(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

/// As whom the function writes what it sets aside, to SQS and S3 alike.
#[derive(Debug, Clone)]
pub(crate) struct AwsIdentity {
    /// The signing region: Lambda's `AWS_REGION`.
    pub region: String,
    /// The execution role's credentials, which Lambda puts in the environment. Their `Debug`
    /// shows no secret.
    pub credentials: Credentials,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_give_the_json_protocol_endpoint_and_name_their_queue() {
        let url: QueueUrl = "https://sqs.eu-west-1.amazonaws.com/123456789012/failures"
            .parse()
            .unwrap();
        assert_eq!(url.endpoint, "https://sqs.eu-west-1.amazonaws.com/");
        assert!(!url.fifo);
        assert_eq!(
            url.to_string(),
            "https://sqs.eu-west-1.amazonaws.com/123456789012/failures"
        );
        let fifo: QueueUrl = "https://sqs.eu-west-1.amazonaws.com/123456789012/failures.fifo"
            .parse()
            .unwrap();
        assert!(fifo.fifo);
        assert!(fifo.is_queue_arn("arn:aws:sqs:eu-west-1:123456789012:failures.fifo"));
        assert!(!fifo.is_queue_arn("arn:aws:sqs:eu-west-1:123456789012:failures"));
        assert!(!fifo.is_queue_arn("arn:aws:sqs:eu-west-1:999999999999:failures.fifo"));
    }

    #[test]
    fn anything_but_a_plain_queue_url_is_refused() {
        for (text, problem) in [
            ("sqs.eu-west-1.amazonaws.com/1/q", "not a URL"),
            ("/123456789012/q", "needs a scheme"),
            ("ftp://host/1/q", "is not http or https"),
            ("https://host/q", "/<account id>/<queue name>"),
            ("https://host/1/q/extra", "/<account id>/<queue name>"),
            ("https://user:pw@host/1/q", "must not carry credentials"),
            ("https://host/1/q?x=1", "must not have a query"),
        ] {
            let error = text.parse::<QueueUrl>().unwrap_err();
            assert!(error.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn bucket_urls_name_objects_virtual_hosted_or_path_style() {
        let hosted: BucketUrl = "https://failures.s3.eu-west-1.amazonaws.com/"
            .parse()
            .unwrap();
        assert_eq!(
            hosted.object("quarantine/a.json"),
            "https://failures.s3.eu-west-1.amazonaws.com/quarantine/a.json"
        );
        let path: BucketUrl = "http://127.0.0.1:9000/failures".parse().unwrap();
        assert_eq!(path.object("k"), "http://127.0.0.1:9000/failures/k");
        assert!("https://key:secret@host/b".parse::<BucketUrl>().is_err());
    }
}
