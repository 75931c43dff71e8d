//! The multipart body of a queued batch, read back by a MIME parser and by a form-data parser:
//! each must find every chunk, in order, named and framed as memfault-cli frames it.

use crate::support::*;
use mailparse::{DispositionType, MailHeaderMap};
use wiremock::ResponseTemplate;

/// Twelve chunks, so that part names run into two digits.
fn chunks() -> Vec<Vec<u8>> {
    (0..12).map(|index| chunk(0, index)).collect()
}

/// The request Memfault received for a batch of `chunks`: its Content-Type and body.
async fn posted(chunks: &[Vec<u8>]) -> (String, Vec<u8>) {
    let server = server_answering(ResponseTemplate::new(202)).await;
    let forwarder = forwarder(config_for(&server.uri()));
    let answer = run_sqs(&forwarder, queued_batch("DEVICE", chunks), BUDGET).await;
    assert!(answer.batch_item_failures.is_empty());
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let content_type = requests[0].headers["content-type"].to_str().unwrap();
    (content_type.to_owned(), requests[0].body.clone())
}

#[tokio::test]
async fn a_mime_parser_reads_each_part_with_memfault_clis_headers() {
    let chunks = chunks();
    let (content_type, body) = posted(&chunks).await;

    let mut message = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    message.extend_from_slice(&body);
    let parsed = mailparse::parse_mail(&message).unwrap();
    assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
    assert_eq!(parsed.subparts.len(), chunks.len());
    for (index, (part, chunk)) in parsed.subparts.iter().zip(&chunks).enumerate() {
        let names: Vec<String> = part.headers.iter().map(|h| h.get_key()).collect();
        assert_eq!(
            names,
            ["Content-Disposition", "Content-Type", "Content-Length"]
        );
        let disposition = part.get_content_disposition();
        assert_eq!(disposition.disposition, DispositionType::FormData);
        assert_eq!(disposition.params["name"], format!("chunk{index}"));
        assert_eq!(disposition.params["filename"], format!("chunk.bin{index}"));
        assert_eq!(part.ctype.mimetype, "application/octet-stream");
        assert_eq!(
            part.headers.get_first_value("Content-Length"),
            Some(chunk.len().to_string())
        );
        assert_eq!(&part.get_body_raw().unwrap(), chunk, "part {index}");
    }
}

#[tokio::test]
async fn a_form_data_parser_finds_every_chunk_as_a_named_file() {
    let chunks = chunks();
    let (content_type, body) = posted(&chunks).await;

    // Servers that parse the body as form-data (as Django and Werkzeug do) see this.
    let form_data = content_type.replace("multipart/mixed", "multipart/form-data");
    let files: Vec<(String, String, Vec<u8>)> = read_parts(&form_data, &body, |field| {
        let name = field.name().unwrap().to_owned();
        (name, field.file_name().unwrap().to_owned())
    })
    .unwrap()
    .into_iter()
    .map(|((name, file_name), bytes)| (name, file_name, bytes))
    .collect();
    let expected: Vec<(String, String, Vec<u8>)> = chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            (
                format!("chunk{index}"),
                format!("chunk.bin{index}"),
                chunk.clone(),
            )
        })
        .collect();
    assert_eq!(files, expected);
}
