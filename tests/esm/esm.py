"""Lambda's event source mappings for one Kinesis shard and one SQS queue, simulated from AWS's
documented rules (Lambda developer guide: "Using Lambda with Kinesis", "Using Lambda with Amazon
SQS", "Handling errors for an SQS event source", and the S3 on-failure destination record).

Kinesis: batches of up to BatchSize records from the checkpoint; with ReportBatchItemFailures the
checkpoint moves to just before the lowest reported sequence number (no reported failures: past
the batch; an invalid answer, an error or a timeout: nowhere, the whole batch is retried); when
the records at the checkpoint have been tried and are older than MaximumRecordAgeInSeconds, they
go to the on-failure destination, here an in-memory S3 store holding Lambda's S3 record, and the
checkpoint moves past them.

SQS: up to BatchSize visible messages per invocation; each receive makes a message invisible for
the visibility timeout and counts a receive; a message received more than maxReceiveCount times is
moved to the dead-letter queue by the redrive policy; messages named in `batchItemFailures`, or
all of them after an error, timeout or invalid answer, come back after the visibility timeout, the
others are deleted.

Time is compressed against AWS's limits (a record age of seconds, not AWS's minimum of 60 s, and
a poll every 50 ms rather than once a second): the rules are the same, the scenarios end sooner.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from runtime_api import FUNCTION_ARN, Function, Invocation

REGION = "eu-west-1"
ACCOUNT = "123456789012"
SHARD_ID = "shardId-000000000000"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/memfault-chunks"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:memfault-chunks"
# Kinesis sequence numbers are decimal strings of up to 129 digits; these are shaped like real ones.
FIRST_SEQUENCE = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
IDLE_POLL_S = 0.05


class InvalidAnswer(Exception):
    """An answer Lambda treats as a failure of the whole batch."""


def failed_item_ids(invocation: Invocation, batch_ids: list[str]) -> set[str]:
    """The items to retry after `invocation`, by AWS's rules for `batchItemFailures`: no list (or
    an empty one) means all succeeded; an item without a usable id, or with an id not in the
    batch, makes the whole batch fail, as do an error and a timeout."""
    if invocation.failed:
        return set(batch_ids)
    answer = invocation.body
    if answer is None or answer == {}:
        return set()
    try:
        if not isinstance(answer, dict):
            raise InvalidAnswer(answer)
        items = answer.get("batchItemFailures") or []
        ids = {item["itemIdentifier"] for item in items}
        if not ids <= set(batch_ids):
            raise InvalidAnswer(answer)
        return ids
    except (InvalidAnswer, KeyError, TypeError):
        return set(batch_ids)


@dataclass(frozen=True)
class KinesisRecord:
    sequence_number: str
    partition_key: str
    data: bytes
    arrival: float

    def event_record(self) -> dict[str, Any]:
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": self.partition_key,
                "sequenceNumber": self.sequence_number,
                "data": base64.b64encode(self.data).decode(),
                "approximateArrivalTimestamp": round(self.arrival, 3),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{SHARD_ID}:{self.sequence_number}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/memfault-chunk-proxy",
            "awsRegion": REGION,
            "eventSourceARN": STREAM_ARN,
        }


class KinesisShard:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[KinesisRecord] = []

    def put(self, data: bytes, partition_key: str) -> KinesisRecord:
        with self.lock:
            record = KinesisRecord(str(FIRST_SEQUENCE + 10 * len(self.records)), partition_key,
                                   data, time.time())
            self.records.append(record)
            return record

    def read(self, start: int, count: int) -> list[KinesisRecord]:
        with self.lock:
            return self.records[start:start + count]


@dataclass
class KinesisEsm:
    shard: KinesisShard
    function: Function
    batch_size: int
    max_record_age_s: float
    checkpoint: int = 0  # index of the first record not yet done with
    s3: list[dict[str, Any]] = field(default_factory=list)  # on-failure destination objects
    attempts: int = 0  # invocations for the batch at the checkpoint
    # Since when the record at the checkpoint has waited to be read, and the longest such wait
    # that ended with the checkpoint moving past it.
    held_since: float | None = None
    longest_hold_s: float = 0.0
    # Invocations re-sending the batch at a checkpoint that an earlier invocation did not move,
    # and the time spent so, from the first such retry to the checkpoint moving: how fast the
    # mapping retries a held shard, what a stall rule sees of Lambda's retries.
    retries: int = 0
    retrying_s: float = 0.0
    retrying_since: float | None = None

    def step(self) -> bool:
        """One invocation (or one expiry); False when the shard has nothing past the checkpoint."""
        batch = self.shard.read(self.checkpoint, self.batch_size)
        if not batch:
            return False
        now = time.time()
        if self.held_since is None:
            self.held_since = max(now, batch[0].arrival)
        expired = [record for record in batch if now - record.arrival > self.max_record_age_s]
        if expired and self.attempts:
            # Records are in arrival order, so the expired ones are the batch's head.
            self.s3.append(self._on_failure_object(expired))
            self._advance(len(expired))
            return True
        if self.attempts:
            self.retries += 1
            if self.retrying_since is None:
                self.retrying_since = time.time()
        invocation = self.function.invoke({"Records": [r.event_record() for r in batch]})
        self.attempts += 1
        failed = failed_item_ids(invocation, [r.sequence_number for r in batch])
        done = next((i for i, r in enumerate(batch) if r.sequence_number in failed), len(batch))
        self._advance(done)
        return True

    def _advance(self, records: int) -> None:
        if records:
            self.checkpoint += records
            self.attempts = 0
            if self.held_since is not None:
                self.longest_hold_s = max(self.longest_hold_s, time.time() - self.held_since)
            self.held_since = None
            if self.retrying_since is not None:
                self.retrying_s += time.time() - self.retrying_since
            self.retrying_since = None

    def longest_hold(self) -> float:
        """The longest time the checkpoint stood still with records past it, so far."""
        pending = time.time() - self.held_since if self.held_since is not None else 0.0
        return max(self.longest_hold_s, pending)

    def time_retrying(self) -> float:
        """Seconds spent re-sending held batches, so far."""
        pending = time.time() - self.retrying_since if self.retrying_since is not None else 0.0
        return self.retrying_s + pending

    def retries_per(self, seconds: float) -> float:
        """Held invocations per `seconds` of holding: with a stall limit, how many retries one
        stall limit spans."""
        spent = self.time_retrying()
        return self.retries * seconds / spent if spent else 0.0

    def held(self) -> list[KinesisRecord]:
        """Records still in the shard past the checkpoint."""
        return self.shard.read(self.checkpoint, len(self.shard.records))

    def _on_failure_object(self, records: list[KinesisRecord]) -> dict[str, Any]:
        last = self.function.invocations[-1]
        event = {"Records": [record.event_record() for record in records]}
        return {
            "requestContext": {
                "requestId": last.request_id,
                "functionArn": FUNCTION_ARN,
                "condition": "RecordAgeExceeded",
                "approximateInvokeCount": self.attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "" if last.kind == "response" else "Unhandled",
            },
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "KinesisBatchInfo": {
                "shardId": SHARD_ID,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": records[0].arrival,
                "approximateArrivalOfLastRecord": records[-1].arrival,
                "batchSize": len(records),
                "streamArn": STREAM_ARN,
            },
            # Lambda writes the invocation's event as an escaped JSON string.
            "payload": json.dumps(event),
        }


@dataclass
class SqsMessage:
    message_id: str
    body: str
    sent: float
    receive_count: int = 0
    visible_at: float = 0.0

    def event_record(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "receiptHandle": f"{self.message_id}#{self.receive_count}",
            "body": self.body,
            "attributes": {
                "ApproximateReceiveCount": str(self.receive_count),
                "SentTimestamp": str(int(self.sent * 1000)),
                "SenderId": "AROAEXAMPLE:iot-rule",
                "ApproximateFirstReceiveTimestamp": str(int(time.time() * 1000)),
            },
            "messageAttributes": {},
            "md5OfBody": hashlib.md5(self.body.encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": QUEUE_ARN,
            "awsRegion": REGION,
        }


@dataclass
class SqsEsm:
    function: Function
    batch_size: int
    visibility_timeout_s: float
    max_receive_count: int
    seed: int
    messages: list[SqsMessage] = field(default_factory=list)
    dead_letters: list[SqsMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = random.Random(self.seed)

    def send(self, body: str) -> SqsMessage:
        message = SqsMessage(f"{self._ids.getrandbits(128):032x}", body, time.time())
        self.messages.append(message)
        return message

    def step(self) -> bool:
        """One invocation; False when the queue is empty. Waits while every message left is
        invisible."""
        if not self.messages:
            return False
        now = time.time()
        visible = [m for m in self.messages if m.visible_at <= now]
        for message in [m for m in visible if m.receive_count >= self.max_receive_count]:
            self.messages.remove(message)
            self.dead_letters.append(message)
            visible.remove(message)
        batch = visible[:self.batch_size]
        if not batch:
            time.sleep(IDLE_POLL_S)
            return bool(self.messages)
        for message in batch:
            message.receive_count += 1
            message.visible_at = now + self.visibility_timeout_s
        invocation = self.function.invoke({"Records": [m.event_record() for m in batch]})
        failed = failed_item_ids(invocation, [m.message_id for m in batch])
        for message in batch:
            if message.message_id not in failed:
                self.messages.remove(message)
        return True
