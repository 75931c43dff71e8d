//! What one request carries, and how several chunks share one body.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;

/// What one request carries: a single chunk, or several chunks of one device in order.
#[derive(Debug, Clone)]
pub enum Upload {
    Single(Bytes),
    Multipart(Vec<Bytes>),
}

impl Upload {
    pub fn chunk_count(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Multipart(parts) => parts.len(),
        }
    }

    pub fn payload_bytes(&self) -> usize {
        match self {
            Self::Single(chunk) => chunk.len(),
            Self::Multipart(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// The body and its content type. Multipart bodies use the `multipart/mixed` form of the
    /// chunks API, one `application/octet-stream` part with a `Content-Length` per chunk.
    pub(super) fn encode(&self) -> (Bytes, HeaderValue) {
        match self {
            Self::Single(chunk) => (
                chunk.clone(),
                HeaderValue::from_static("application/octet-stream"),
            ),
            Self::Multipart(parts) => {
                // 128 random bits: a chunk that contains the boundary by chance is not a
                // practical concern, so the parts are not scanned for it.
                let boundary = format!("chunk-proxy-{:032x}", fastrand::u128(..));
                let (body, content_type) = encode_multipart(parts, &boundary);
                let content_type = HeaderValue::from_str(&content_type)
                    .expect("a boundary of ASCII letters and digits is a valid header value");
                (body, content_type)
            }
        }
    }
}

/// Encodes chunks as a `multipart/mixed` body; returns the body and its `Content-Type`.
fn encode_multipart(parts: &[Bytes], boundary: &str) -> (Bytes, String) {
    const PART_HEADERS: &str = "\r\nContent-Type: application/octet-stream\r\nContent-Length: ";
    let framing = parts.len() * (boundary.len() + PART_HEADERS.len() + 32) + boundary.len() + 8;
    let mut body = BytesMut::with_capacity(framing + parts.iter().map(Bytes::len).sum::<usize>());
    for part in parts {
        body.put_slice(b"--");
        body.put_slice(boundary.as_bytes());
        body.put_slice(PART_HEADERS.as_bytes());
        body.put_slice(part.len().to_string().as_bytes());
        body.put_slice(b"\r\n\r\n");
        body.put_slice(part);
        body.put_slice(b"\r\n");
    }
    body.put_slice(b"--");
    body.put_slice(boundary.as_bytes());
    body.put_slice(b"--\r\n");
    (
        body.freeze(),
        format!("multipart/mixed; boundary={boundary}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_body_frames_each_chunk_with_its_length() {
        let parts = [
            Bytes::from_static(b"\x08\x02ab"),
            Bytes::from_static(b"xyz"),
        ];
        let (body, content_type) = encode_multipart(&parts, "BOUNDARY");
        assert_eq!(content_type, "multipart/mixed; boundary=BOUNDARY");
        let expected = b"--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\x08\x02ab\r\n\
--BOUNDARY\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nxyz\r\n\
--BOUNDARY--\r\n";
        assert_eq!(&body[..], &expected[..]);
    }

    #[test]
    fn multipart_boundaries_differ_per_request() {
        let upload = Upload::Multipart(vec![Bytes::from_static(b"a")]);
        let (_, first) = upload.encode();
        let (_, second) = upload.encode();
        assert_ne!(first, second);
        assert!(
            first
                .to_str()
                .unwrap()
                .starts_with("multipart/mixed; boundary=chunk-proxy-")
        );
    }

    #[test]
    fn single_uploads_are_sent_as_is() {
        let upload = Upload::Single(Bytes::from_static(b"\x08\x02"));
        let (body, content_type) = upload.encode();
        assert_eq!(&body[..], b"\x08\x02");
        assert_eq!(content_type, "application/octet-stream");
        assert_eq!(upload.chunk_count(), 1);
        assert_eq!(upload.payload_bytes(), 2);
    }
}
