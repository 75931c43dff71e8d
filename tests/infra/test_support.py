"""support.py's parsing helpers, on the inputs where a hand-written one would slip."""

from __future__ import annotations

import pytest

from project_key import shorten
from smoke import mqtt_matches
from support import multipart_parts

# Parts that end in CR, LF or dashes, an empty one, and bytes that are not text.
CHUNKS = [b"\r", b"\n", b"a\r\n", b"\n\r", b"", b"--", b"\r\n--x", bytes(range(256))]


def multipart(chunks: list[bytes], boundary: str = "b0undary") -> bytes:
    parts = b"".join(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {len(c)}\r\n\r\n".encode() + c + b"\r\n" for c in chunks)
    return parts + f"--{boundary}--\r\n".encode()


def test_multipart_parts_come_back_byte_for_byte() -> None:
    parts = multipart_parts("multipart/mixed; boundary=b0undary", multipart(CHUNKS))
    assert [part.body for part in parts] == CHUNKS
    assert parts[0].headers == {"content-type": "application/octet-stream", "content-length": "1"}


def test_a_multipart_body_cut_short_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        multipart_parts("multipart/mixed; boundary=b0undary", multipart(CHUNKS)[:-12])
    with pytest.raises(ValueError, match="not a multipart"):
        multipart_parts("application/octet-stream", b"chunk")


def test_shorten_keeps_what_is_no_key() -> None:
    assert shorten("abcdefghij") == "abcd…"
    assert shorten("abc") == "a…"
    assert shorten("-") == "…"
    assert [shorten(value, ("", "-")) for value in ("", "-", "abcdefghij")] == ["", "-", "abcd…"]


@pytest.mark.parametrize("topic_filter, topic, matches", [
    ("prod/+/+/memfault/#", "prod/b/s/memfault/k/chunk", True),
    ("prod/+/+/memfault/#", "prod/b/s/memfault", True),  # '#' matches the parent level too
    ("prod/+/+/memfault/#", "prod/b/memfault/k", False),
    ("memfault/+/+/chunks", "memfault/p/s/chunks/extra", False),
    ("memfault/+/+/chunks", "memfault/p/s", False),
])
def test_mqtt_matches(topic_filter: str, topic: str, matches: bool) -> None:
    assert mqtt_matches(topic_filter, topic) is matches
