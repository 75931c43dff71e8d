//! What one request carries, and how several chunks share one body.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;

/// What one request carries: a single chunk, or several chunks of one device in order.
#[derive(Debug, Clone)]
pub(crate) enum Upload {
    Single(Bytes),
    Multipart(Parts),
}

/// Two chunks or more: only [`Upload::of`] makes them, so a multipart body never has one part.
#[derive(Debug, Clone)]
pub(crate) struct Parts(Vec<Bytes>);

impl Upload {
    /// One chunk goes as it is; more share a multipart body.
    pub(crate) fn of(first: Bytes, rest: impl IntoIterator<Item = Bytes>) -> Self {
        let mut rest = rest.into_iter().peekable();
        if rest.peek().is_none() {
            return Self::Single(first);
        }
        Self::Multipart(Parts(std::iter::once(first).chain(rest).collect()))
    }

    pub(crate) fn chunk_count(&self) -> usize {
        match self {
            Self::Single(_) => 1,
            Self::Multipart(Parts(parts)) => parts.len(),
        }
    }

    /// The chunks it carries, in order.
    #[cfg(test)]
    pub(crate) fn chunks(&self) -> &[Bytes] {
        match self {
            Self::Single(chunk) => std::slice::from_ref(chunk),
            Self::Multipart(Parts(parts)) => parts,
        }
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        match self {
            Self::Single(chunk) => chunk.len(),
            Self::Multipart(Parts(parts)) => parts.iter().map(Bytes::len).sum(),
        }
    }

    /// The body and its content type. Multipart bodies use the `multipart/mixed` form of the
    /// chunks API, one `application/octet-stream` part per chunk (see `encode_multipart`).
    pub(super) fn encode(&self) -> (Bytes, HeaderValue) {
        match self {
            Self::Single(chunk) => (
                chunk.clone(),
                HeaderValue::from_static("application/octet-stream"),
            ),
            Self::Multipart(Parts(parts)) => {
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

/// Per part, besides its boundary and its bytes: the header text of `encode_multipart` with room
/// for two indices and a length of up to 20 digits each.
const PART_FRAMING: usize = 140 + 3 * 20;

fn framing_capacity(parts: &[Bytes], boundary: &str) -> usize {
    let payload: usize = parts.iter().map(Bytes::len).sum();
    payload + parts.len() * (boundary.len() + PART_FRAMING) + boundary.len() + 8
}

/// Encodes chunks as a `multipart/mixed` body; returns the body and its `Content-Type`.
///
/// Each part is framed exactly as `memfault post-chunk` (memfault-cli) frames it: the CLI builds a
/// form-data body and relabels it `multipart/mixed`, so its parts carry a form field `chunk<i>`
/// with the file name `chunk.bin<i>` (`i` counting from 0), then the type and the length. A
/// server that reads the body as form-data finds every chunk; one that reads it as MIME finds the
/// same parts.
fn encode_multipart(parts: &[Bytes], boundary: &str) -> (Bytes, String) {
    let mut body = BytesMut::with_capacity(framing_capacity(parts, boundary));
    for (index, part) in parts.iter().enumerate() {
        write!(
            body,
            "--{boundary}\r\n\
             Content-Disposition: form-data; name=\"chunk{index}\"; filename=\"chunk.bin{index}\"\r\n\
             Content-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n\r\n",
            part.len()
        )
        .expect("writing to a BytesMut cannot fail");
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
    fn multipart_parts_are_framed_as_memfault_cli_frames_them() {
        let parts = [
            Bytes::from_static(b"\x08\x02ab"),
            Bytes::from_static(b"xyz"),
        ];
        let (body, content_type) = encode_multipart(&parts, "BOUNDARY");
        assert_eq!(content_type, "multipart/mixed; boundary=BOUNDARY");
        let expected = b"--BOUNDARY\r\n\
Content-Disposition: form-data; name=\"chunk0\"; filename=\"chunk.bin0\"\r\n\
Content-Type: application/octet-stream\r\nContent-Length: 4\r\n\r\n\x08\x02ab\r\n\
--BOUNDARY\r\n\
Content-Disposition: form-data; name=\"chunk1\"; filename=\"chunk.bin1\"\r\n\
Content-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\nxyz\r\n\
--BOUNDARY--\r\n";
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(expected)
        );
    }

    #[test]
    fn the_reserved_capacity_fits_the_body() {
        let parts: Vec<Bytes> = (0..1_000).map(|_| Bytes::from_static(b"x")).collect();
        let boundary = format!("chunk-proxy-{:032x}", u128::MAX);
        let (body, _) = encode_multipart(&parts, &boundary);
        assert!(
            body.len() <= framing_capacity(&parts, &boundary),
            "{}",
            body.len()
        );
    }

    #[test]
    fn multipart_boundaries_differ_per_request() {
        let upload = Upload::of(Bytes::from_static(b"a"), [Bytes::from_static(b"b")]);
        assert_eq!(upload.chunk_count(), 2);
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
        let upload = Upload::of(Bytes::from_static(b"\x08\x02"), []);
        assert!(matches!(upload, Upload::Single(_)));
        let (body, content_type) = upload.encode();
        assert_eq!(&body[..], b"\x08\x02");
        assert_eq!(content_type, "application/octet-stream");
        assert_eq!(upload.chunk_count(), 1);
        assert_eq!(upload.payload_bytes(), 2);
    }
}
