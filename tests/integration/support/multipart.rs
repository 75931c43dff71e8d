//! A multipart body read into its parts by multer (the form-data parser of axum), a parser
//! independent of the function's own framing. The integration tests read Memfault's requests
//! with it, and `examples/local.rs`, which includes this file as a module, shows them with it.

use futures_util::FutureExt as _;

/// The parts of `body`, a multipart body of the Content-Type `content_type`, in order: what
/// `inspect` makes of each part's headers (name, file name, type) beside the part's bytes.
/// Anything but a multipart body with a boundary, or a body multer cannot read, is an error.
pub(crate) fn read_parts<T>(
    content_type: &str,
    body: &[u8],
    mut inspect: impl FnMut(&multer::Field<'_>) -> T,
) -> Result<Vec<(T, Vec<u8>)>, String> {
    let content_type: mime::Mime = content_type
        .parse()
        .map_err(|error| format!("Content-Type {content_type:?}: {error}"))?;
    if content_type.type_() != mime::MULTIPART {
        return Err(format!("not a multipart Content-Type: {content_type}"));
    }
    let boundary = content_type
        .get_param(mime::BOUNDARY)
        .ok_or_else(|| format!("no boundary in {content_type}"))?
        .to_string();
    let body = bytes::Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let read = async {
        let mut parts = Vec::new();
        while let Some(field) = multipart.next_field().await? {
            let seen = inspect(&field);
            parts.push((seen, field.bytes().await?.to_vec()));
        }
        Ok::<_, multer::Error>(parts)
    };
    // The whole body is in memory, so multer never waits for more: one poll reads it all, and
    // callers without an async context (a wiremock responder) can read a body too.
    read.now_or_never()
        .expect("a body in memory is read without waiting")
        .map_err(|error| error.to_string())
}
