#!/usr/bin/env python3
"""Checks that a multipart upload from this function is framed byte for byte as memfault-cli's.

memfault-cli (`memfault post-chunk`, Memfault's own client on PyPI) and the function's handler
(`cargo run --profile test --example local` on an SQS batch: the test build's profile, so that
after `make lint` only the example compiles) post the same chunks for the same device to a
recorder on loopback. Once each request's random boundary is replaced by a placeholder, the two
bodies and Content-Types must be identical. Nothing leaves the machine.

Needs memfault-cli importable by this interpreter (`pip install memfault-cli`) and cargo.
Usage, from the repository root: python3 tests/memfault_cli_framing.py
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from memfault_cli.cli import cli as memfault_cli

from support import Recorder

SERIAL = "FRAMING-TEST"
KEY = "FramingTestKey"
# Twelve chunks, so that part names run into two digits; binary, with CR LF and dashes inside.
CHUNKS = [bytes([0x80 | i, 0xFF, 13, 10, 45, 45, i]) + b"\xa5" * i for i in range(12)]
REPOSITORY = Path(__file__).resolve().parent.parent


def normalised(content_type, body):
    boundary = content_type.split("boundary=", 1)[1]
    return (
        content_type.replace(boundary, "BOUNDARY"),
        body.replace(boundary.encode(), b"BOUNDARY"),
    )


def post_with_memfault_cli(url, folder):
    export = folder / "export.txt"
    export.write_text("".join(f"MC:{base64.b64encode(c).decode()}:\n" for c in CHUNKS))
    memfault_cli.main(
        ["--url", url, "--project-key", KEY, "post-chunk", "--device-serial", SERIAL,
         "--encoding", "sdk_data_export", str(export)],
        standalone_mode=False,
    )


def post_with_the_function(url, folder):
    records = [
        {
            "messageId": f"m{index}",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:memfault-chunks",
            "body": json.dumps({
                "data": base64.b64encode(chunk).decode(),
                "topic": f"prod/board/{SERIAL}/memfault/{KEY}/chunk",
            }),
        }
        for index, chunk in enumerate(CHUNKS)
    ]
    event = folder / "batch.json"
    event.write_text(json.dumps({"Records": records}))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MEMFAULT_")}
    environment["MEMFAULT_CHUNKS_URL"] = url
    subprocess.run(
        ["cargo", "run", "--locked", "--quiet", "--profile", "test", "--example", "local", "--",
         str(event)],
        cwd=REPOSITORY, env=environment, check=True, stdout=subprocess.DEVNULL,
    )


def main():
    with Recorder() as recorder, tempfile.TemporaryDirectory() as folder:
        post_with_memfault_cli(recorder.url, Path(folder))
        post_with_the_function(recorder.url, Path(folder))
        received = recorder.take()

    if len(received) != 2:
        sys.exit(f"expected one request from each client, got {len(received)}")
    cli, ours = received
    cli_type, cli_body = normalised(cli.headers["content-type"], cli.body)
    our_type, our_body = normalised(ours.headers["content-type"], ours.body)
    if (cli.path, cli_type, cli_body) != (ours.path, our_type, our_body):
        print(f"memfault-cli:  {cli.path} {cli_type}\n{cli_body!r}\n")
        print(f"this function: {ours.path} {our_type}\n{our_body!r}")
        sys.exit("the multipart framing differs from memfault-cli's")
    print(f"same framing as memfault-cli: {len(CHUNKS)} parts, {len(our_body)} bytes, {our_type}")


if __name__ == "__main__":
    main()
