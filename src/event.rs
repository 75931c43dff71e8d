//! Event parsing: the JSON an IoT topic rule sends, and the envelopes it can arrive in.
//!
//! The rule `SELECT encode(*, 'base64') AS data, topic() AS topic FROM ...` produces
//! `{"data": "<base64>", "topic": "..."}`; a rule may add `device_serial` and `project_key`.
//! The same object arrives as an SQS message body in queued mode, as a Kinesis record's data in
//! stream mode, and as the `requestPayload` of a failure record when failed chunks are replayed.
//! How an invocation's envelope is recognised is `source`'s concern.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde_json::Value;
use thiserror::Error;

/// AWS IoT Core refuses MQTT messages larger than 128 KiB, so no genuine chunk is larger.
pub(crate) const MAX_PAYLOAD_BYTES: usize = 128 * 1024;

/// Base64 text for `MAX_PAYLOAD_BYTES`, checked before decoding so a huge string costs nothing.
const MAX_ENCODED_LEN: usize = MAX_PAYLOAD_BYTES.div_ceil(3) * 4;

/// IoT's `encode(*, 'base64')` pads; tools that build test events by hand often do not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One chunk as published by a device, with the identity claims that came with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMessage {
    pub topic: String,
    pub payload: Bytes,
    pub device_serial: Option<String>,
    pub project_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event has no {0:?} field; the rule must select it (see README: rule SQL)")]
    MissingField(&'static str),
    #[error("event field {0:?} must be a string")]
    NotAString(&'static str),
    #[error("event field {0:?} is empty")]
    EmptyField(&'static str),
    #[error("event field \"data\" is not valid base64: {0}")]
    BadBase64(String),
    #[error("chunk payload is empty")]
    EmptyPayload,
    #[error(
        "chunk payload is larger than AWS IoT's {MAX_PAYLOAD_BYTES}-byte message limit ({0} bytes of base64)"
    )]
    PayloadTooLarge(usize),
    #[error("{what} is not JSON: {reason}")]
    NotJson { what: &'static str, reason: String },
    #[error("{what} cannot be read: {reason}")]
    Unreadable { what: &'static str, reason: String },
}

impl EventError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadBase64(_) => "InvalidBase64",
            Self::EmptyPayload => "EmptyPayload",
            Self::PayloadTooLarge(_) => "PayloadTooLarge",
            Self::NotAnObject
            | Self::MissingField(_)
            | Self::NotAString(_)
            | Self::EmptyField(_)
            | Self::NotJson { .. }
            | Self::Unreadable { .. } => "InvalidEvent",
        }
    }
}

fn required_string<'v>(event: &'v Value, field: &'static str) -> Result<&'v str, EventError> {
    match event.get(field) {
        None | Some(Value::Null) => Err(EventError::MissingField(field)),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(EventError::NotAString(field)),
    }
}

/// An absent or null optional field means "not given"; an empty one is a rule bug worth refusing.
fn optional_string(event: &Value, field: &'static str) -> Result<Option<String>, EventError> {
    match event.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Err(EventError::EmptyField(field)),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(EventError::NotAString(field)),
    }
}

/// An on-failure destination record carries the original event as `requestPayload`.
/// The rule's event itself, also when it comes wrapped in a failure record (a replay).
pub(crate) fn unwrap_failure_record(event: &Value) -> &Value {
    event.get("requestPayload").unwrap_or(event)
}

/// The decoder's own wording ("Invalid symbol 33, offset 4") gives a byte value and a 0-based
/// offset; whoever reads the refusal is looking at the event text, so name the character as it
/// appears there and count positions from 1.
fn describe_base64_error(error: &base64::DecodeError) -> String {
    let character = |byte: u8| match byte {
        0x21..=0x7e => format!("'{}'", byte as char),
        b' ' => "a space".to_owned(),
        _ => format!("byte 0x{byte:02x}"),
    };
    match *error {
        base64::DecodeError::InvalidByte(offset, b'=') => {
            format!("'=' at position {} is padding before the end", offset + 1)
        }
        base64::DecodeError::InvalidByte(offset, byte) => format!(
            "{} at position {} is not a base64 character",
            character(byte),
            offset + 1
        ),
        base64::DecodeError::InvalidLastSymbol(offset, byte) => format!(
            "{} at position {} (the last) leaves bits over: the text was cut or altered",
            character(byte),
            offset + 1
        ),
        base64::DecodeError::InvalidLength(length) => {
            format!(
                "{length} base64 characters cannot encode whole bytes (one is missing or extra)"
            )
        }
        base64::DecodeError::InvalidPadding => "the '=' padding is misplaced".to_owned(),
    }
}

/// Parses one IoT rule event, or an on-failure destination record wrapping one.
pub fn parse_rule_event(event: &Value) -> Result<ChunkMessage, EventError> {
    let event = unwrap_failure_record(event);
    if !event.is_object() {
        return Err(EventError::NotAnObject);
    }
    let topic = required_string(event, "topic")?;
    if topic.is_empty() {
        return Err(EventError::EmptyField("topic"));
    }
    let data = required_string(event, "data")?;
    if data.len() > MAX_ENCODED_LEN {
        return Err(EventError::PayloadTooLarge(data.len()));
    }
    let payload = BASE64
        .decode(data)
        .map_err(|error| EventError::BadBase64(describe_base64_error(&error)))?;
    if payload.is_empty() {
        return Err(EventError::EmptyPayload);
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(EventError::PayloadTooLarge(data.len()));
    }
    Ok(ChunkMessage {
        topic: topic.to_owned(),
        payload: Bytes::from(payload),
        device_serial: optional_string(event, "device_serial")?,
        project_key: optional_string(event, "project_key")?,
    })
}

/// Reads JSON text that should hold an IoT rule event (or a failure record): an SQS message
/// body, a Kinesis record's data. The value is kept, for [`parse_rule_event`] and for the
/// failure record should the chunk be set aside. `what` names it in the refusal.
pub(crate) fn rule_json(text: &[u8], what: &'static str) -> Result<Value, EventError> {
    serde_json::from_slice(text).map_err(|error| EventError::NotJson {
        what,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOPIC: &str = "prod/board/SERIAL/memfault/KEY/chunk";

    #[test]
    fn decodes_the_rule_event() {
        let message = parse_rule_event(&json!({"data": "AQIDBA==", "topic": TOPIC})).unwrap();
        assert_eq!(&message.payload[..], &[1, 2, 3, 4]);
        assert_eq!(message.topic, TOPIC);
        assert_eq!(message.device_serial, None);
        assert_eq!(message.project_key, None);
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let message = parse_rule_event(&json!({"data": "AQIDBA", "topic": TOPIC})).unwrap();
        assert_eq!(&message.payload[..], &[1, 2, 3, 4]);
    }

    #[test]
    fn explicit_identity_fields_are_read() {
        let event =
            json!({"data": "AQ==", "topic": TOPIC, "device_serial": "D1", "project_key": "K"});
        let message = parse_rule_event(&event).unwrap();
        assert_eq!(message.device_serial.as_deref(), Some("D1"));
        assert_eq!(message.project_key.as_deref(), Some("K"));
        let event = json!({"data": "AQ==", "topic": TOPIC, "device_serial": null});
        assert_eq!(parse_rule_event(&event).unwrap().device_serial, None);
    }

    #[test]
    fn malformed_events_are_refused_by_field() {
        for (event, expected) in [
            (json!("a string"), EventError::NotAnObject),
            (json!({"topic": TOPIC}), EventError::MissingField("data")),
            (json!({"data": "AQ=="}), EventError::MissingField("topic")),
            (
                json!({"data": 5, "topic": TOPIC}),
                EventError::NotAString("data"),
            ),
            (
                json!({"data": "AQ==", "topic": ["x"]}),
                EventError::NotAString("topic"),
            ),
            (
                json!({"data": "AQ==", "topic": ""}),
                EventError::EmptyField("topic"),
            ),
            (
                json!({"data": "", "topic": TOPIC}),
                EventError::EmptyPayload,
            ),
            (
                json!({"data": "AQ==", "topic": TOPIC, "device_serial": 7}),
                EventError::NotAString("device_serial"),
            ),
            (
                json!({"data": "AQ==", "topic": TOPIC, "project_key": ""}),
                EventError::EmptyField("project_key"),
            ),
        ] {
            assert_eq!(parse_rule_event(&event).unwrap_err(), expected, "{event}");
        }
    }

    #[test]
    fn bad_base64_is_refused() {
        for data in ["not base64!", "AQID*A==", "A"] {
            let error = parse_rule_event(&json!({"data": data, "topic": TOPIC})).unwrap_err();
            assert_eq!(error.kind(), "InvalidBase64", "{data}: {error}");
        }
    }

    #[test]
    fn a_base64_refusal_names_the_character_and_its_position() {
        let error = parse_rule_event(&json!({"data": "AQID!A==", "topic": TOPIC})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "event field \"data\" is not valid base64: '!' at position 5 is not a base64 character"
        );
    }

    #[test]
    fn the_iot_size_limit_is_enforced_exactly() {
        let largest = BASE64.encode(vec![0xA5; MAX_PAYLOAD_BYTES]);
        let message = parse_rule_event(&json!({"data": largest, "topic": TOPIC})).unwrap();
        assert_eq!(message.payload.len(), MAX_PAYLOAD_BYTES);

        let too_large = BASE64.encode(vec![0xA5; MAX_PAYLOAD_BYTES + 1]);
        let error = parse_rule_event(&json!({"data": too_large, "topic": TOPIC})).unwrap_err();
        assert_eq!(error.kind(), "PayloadTooLarge");
    }

    #[test]
    fn failure_destination_records_are_unwrapped() {
        let record = json!({
            "version": "1.0",
            "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": {"data": "AQID", "topic": TOPIC},
            "responsePayload": {"errorType": "Retryable.UpstreamUnavailable"}
        });
        let message = parse_rule_event(&record).unwrap();
        assert_eq!(&message.payload[..], &[1, 2, 3]);
    }

    #[test]
    fn rule_json_is_parsed_from_text() {
        let body = json!({"data": "AQID", "topic": TOPIC}).to_string();
        let value = rule_json(body.as_bytes(), "SQS message body").unwrap();
        assert_eq!(parse_rule_event(&value).unwrap().payload.len(), 3);
        let error = rule_json(b"AQID", "Kinesis record data").unwrap_err();
        assert_eq!(error.kind(), "InvalidEvent");
        assert!(
            error
                .to_string()
                .starts_with("Kinesis record data is not JSON"),
            "{error}"
        );
    }
}
