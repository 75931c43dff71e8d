"""What each sample event in events/ must do when it goes through the emulator.

One entry per event file, keyed by its path under events/. test_emulator.py fails when a file
has no entry (or an entry has no file), so a new event is added here with one line.

- A delivered direct event: `delivered(serial, chunk)`: one plain request carrying the chunk,
  and the function's answer naming the serial, the byte count and status 202.
- A refused event: `refused(errorType)`: nothing reaches Memfault; the invocation fails with
  that errorType (docs/delivery.md lists them).
- A batch (SQS, Kinesis, or the stream mapping's S3 failure record): `Expect`
  with every device's uploads, in the order that device must see them, and the exact answer,
  e.g. the `batchItemFailures` it must name. Uploads of different devices may arrive in any
  order (they run in parallel); one device's never do.

Chunks are decoded from the direct sample events (`chunk(...)`), so an expectation says which
sample's bytes must arrive where, never a copy of them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE_KEY = "YOUR_PROJECT_KEY"

PROJECT_A_KEY = "YOUR_PROJECT_A_KEY"
PROJECT_B_KEY = "YOUR_PROJECT_B_KEY"


def chunk(event_file: str) -> bytes:
    """The decoded chunk of a direct event."""
    event = json.loads((EVENTS / event_file).read_text())
    return base64.b64decode(event["data"])


@dataclass(frozen=True)
class Upload:
    """One request to Memfault: a single chunk goes as octet-stream, several as multipart."""

    serial: str
    chunks: tuple[bytes, ...]
    project_key: str = SAMPLE_KEY


@dataclass(frozen=True)
class Expect:
    uploads: tuple[Upload, ...] = ()
    response: dict[str, Any] | None = None
    error_type: str | None = None


def delivered(serial: str, data: bytes, project_key: str = SAMPLE_KEY) -> Expect:
    return Expect(
        uploads=(Upload(serial, (data,), project_key),),
        response={"device_serial": serial, "bytes": len(data), "status": 202, "attempts": 1},
    )


def refused(error_type: str) -> Expect:
    return Expect(error_type=error_type)


HEARTBEAT = chunk("heartbeat.json")
PARTS = tuple(chunk(f"multi-chunk/{part}-of-3.json") for part in (1, 2, 3))

EXPECTATIONS: dict[str, Expect] = {
    "heartbeat.json": delivered("TESTSERIAL", HEARTBEAT),
    "multi-chunk/1-of-3.json": delivered("TESTSERIAL", PARTS[0]),
    "multi-chunk/2-of-3.json": delivered("TESTSERIAL", PARTS[1]),
    "multi-chunk/3-of-3.json": delivered("TESTSERIAL", PARTS[2]),
    # With the settings of events/custom-layout.env, as every sample with such a file.
    "custom-layout.json": delivered("nrf-0042", HEARTBEAT),
    # Replay: the on-failure record's requestPayload is forwarded like the original event.
    "failure-record.json": delivered("TESTSERIAL", HEARTBEAT),
    # Records 1, 3 and 4 carry the multi-chunk message of TESTSERIAL: one multipart request,
    # in message order. Record 2 is the heartbeat of another device: a plain request.
    # Record 5 is not base64: refused, and the only failure reported.
    "sqs-batch.json": Expect(
        uploads=(Upload("TESTSERIAL", PARTS), Upload("SECONDDEVICE", (HEARTBEAT,))),
        response={"batchItemFailures": [
            {"itemIdentifier": "0b6a7c5e-0000-4000-8000-000000000005"}]},
    ),
    # The same records in a Kinesis batch, the bad one between a device's chunks: without a
    # quarantine queue configured it is reported by its sequence number and the checkpoint stays
    # there; the devices around it are delivered, in order.
    "kinesis-batch.json": Expect(
        uploads=(Upload("TESTSERIAL", PARTS), Upload("SECONDDEVICE", (HEARTBEAT,))),
        response={"batchItemFailures": [
            {"itemIdentifier": "49657214283546289216733063488119658396728734015862489094"}]},
    ),
    # The stream mapping's S3 failure record: the batch in its payload is delivered again.
    "kinesis-failure-record.json": Expect(
        uploads=(Upload("TESTSERIAL", (HEARTBEAT,)), Upload("SECONDDEVICE", (HEARTBEAT,))),
        response={"batchItemFailures": []},
    ),
    "bad/missing-data.json": refused("Permanent.InvalidEvent"),
    "bad/data-not-a-string.json": refused("Permanent.InvalidEvent"),
    "bad/bad-base64.json": refused("Permanent.InvalidBase64"),
    "bad/empty-payload.json": refused("Permanent.EmptyPayload"),
    "bad/topic-mismatch.json": refused("Permanent.TopicMismatch"),
    "bad/serial-path-injection.json": refused("Permanent.InvalidDeviceSerial"),
    "bad/key-header-injection.json": refused("Permanent.InvalidProjectKey"),
    # Memfault's current layout: the topic names the project by slug, and each slug's chunks
    # go with that project's key from MEMFAULT_PROJECT_KEYS; no key travels in the topic.
    "guide/project-a.json": delivered("DEVICE-A1", HEARTBEAT, PROJECT_A_KEY),
    "guide/project-b.json": delivered("DEVICE-B1", HEARTBEAT, PROJECT_B_KEY),
    "guide/unknown-project.json": refused("Permanent.UnknownProject"),
    # Both projects in one batch: each device's chunks with its own project's key, DEVICE-A1's
    # three in one multipart request, in message order.
    "guide/sqs-batch.json": Expect(
        uploads=(Upload("DEVICE-A1", PARTS, PROJECT_A_KEY),
                 Upload("DEVICE-B1", (HEARTBEAT,), PROJECT_B_KEY)),
        response={"batchItemFailures": []},
    ),
    "guide/kinesis-batch.json": Expect(
        uploads=(Upload("DEVICE-A1", PARTS, PROJECT_A_KEY),
                 Upload("DEVICE-B1", (HEARTBEAT,), PROJECT_B_KEY)),
        response={"batchItemFailures": []},
    ),
}
