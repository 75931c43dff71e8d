//! Event records as Lambda hands them to the function: the one place their JSON shape is
//! written. The integration tests build their records with it through `support`, and the bench
//! (`benches/runtime_api`), which includes this file as a module, builds its batches with it.

use base64::Engine as _;
use serde_json::{Value, json};

/// The SQS message `id` of the queue `queue_arn`, carrying the text `body`.
pub(crate) fn sqs_message(id: &str, queue_arn: &str, body: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("handle-{id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764072000000",
            "SenderId": "AROAEXAMPLE:iot",
            "ApproximateFirstReceiveTimestamp": "1764072000100"
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "eu-west-1"
    })
}

/// The Kinesis record `sequence_number` of the stream `stream_arn`, carrying `data`, that
/// entered the stream at `arrived` (seconds since the epoch with a fraction, as Kinesis stamps
/// it).
pub(crate) fn kinesis(stream_arn: &str, sequence_number: &str, data: &[u8], arrived: f64) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "pk",
            "sequenceNumber": sequence_number,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": arrived
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("shardId-000000000000:{sequence_number}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/memfault-chunk-proxy",
        "awsRegion": "eu-west-1",
        "eventSourceARN": stream_arn
    })
}
