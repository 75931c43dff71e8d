"""infra/replay-stream-failures.sh against a stand-in for the AWS CLI.

The stand-in keeps the bucket as a folder and answers `lambda invoke` from a table keyed by the
record's requestId, so these tests check the script's own decisions: every object is sent to
the function byte for byte, oldest first, and only an object whose batch was wholly delivered is
deleted. That the function accepts the mapping's S3 record format is tested in
tests/integration/stream.rs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "replay-stream-failures.sh"
PREFIX = "aws/lambda/9f5c0b1e-ESM/shardId-000000000000/2026/11/25/"

FAKE_AWS = r'''#!/usr/bin/env python3
import json, os, shutil, sys
from pathlib import Path

state = Path(os.environ["FAKE_AWS_STATE"])
bucket = state / "bucket"
args = sys.argv[1:]
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps(args) + "\n")

def option(name):
    return args[args.index(name) + 1]

if args[:2] == ["cloudformation", "describe-stacks"]:
    outputs = {"StreamFailureBucketName": "failures-bucket", "FunctionName": "proxy-fn"}
    query = option("--query")
    print(next(value for key, value in outputs.items() if f"'{key}'" in query))
elif args[:2] == ["s3api", "list-objects-v2"]:
    keys = sorted(str(p.relative_to(bucket)) for p in bucket.rglob("*") if p.is_file())
    print("\t".join(keys) if keys else "None")
elif args[:2] == ["s3", "cp"]:
    source = [a for a in args if a.startswith("s3://")][0].split("/", 3)[3]
    shutil.copyfile(bucket / source, args[-1])
elif args[:2] == ["s3", "rm"]:
    (bucket / [a for a in args if a.startswith("s3://")][0].split("/", 3)[3]).unlink()
elif args[:2] == ["lambda", "invoke"]:
    payload = Path(option("--payload").removeprefix("fileb://")).read_bytes()
    with open(state / "payloads.jsonl", "a") as log:
        log.write(json.dumps(payload.decode()) + "\n")
    request_id = json.loads(payload)["requestContext"]["requestId"]
    answer = json.loads((state / "answers.json").read_text())[request_id]
    if answer == "too large":
        print("An error occurred (RequestEntityTooLargeException)", file=sys.stderr)
        sys.exit(254)
    Path(args[-1]).write_text(json.dumps(answer["body"]))
    meta = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    if answer.get("error"):
        meta["FunctionError"] = "Unhandled"
    print(json.dumps(meta))
else:
    sys.exit(f"unexpected aws call: {args}")
'''


def failure_record(request_id: str) -> str:
    event = {"Records": [{"kinesis": {"sequenceNumber": "1", "data": "e30="},
                          "eventSource": "aws:kinesis"}]}
    return json.dumps({
        "requestContext": {"requestId": request_id, "condition": "RecordAgeExceeded"},
        "KinesisBatchInfo": {"shardId": "shardId-000000000000"},
        "payload": json.dumps(event),
    })


@pytest.fixture
def aws(tmp_path: Path):
    """A PATH with the stand-in `aws`, a bucket of three failure records and their answers."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "aws"
    fake.write_text(FAKE_AWS)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state"
    objects = {
        "2026-11-25T10.00.00-a": ("delivered", {"body": {"batchItemFailures": []}}),
        "2026-11-25T11.00.00-b": ("still-failing", {"body": {"batchItemFailures": [
            {"itemIdentifier": "49657214283546289216733063488119658396728734015862489110"}]}}),
        "2026-11-25T12.00.00-c": ("error", {"error": True, "body": {
            "errorType": "Permanent.InvalidEvent", "errorMessage": "payload"}}),
        "2026-11-25T13.00.00-d": ("huge", "too large"),
    }
    answers = {}
    for name, (request_id, answer) in objects.items():
        path = state / "bucket" / PREFIX / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(failure_record(request_id))
        answers[request_id] = answer
    (state / "answers.json").write_text(json.dumps(answers))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_AWS_STATE=str(state))
    return env, state


def run(env, *args):
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60)


def remaining(state: Path) -> list[str]:
    return sorted(p.name for p in (state / "bucket").rglob("*") if p.is_file())


def test_only_wholly_delivered_batches_are_deleted(aws):
    env, state = aws
    result = run(env, "memfault-proxy")

    assert result.returncode == 1, result.stdout + result.stderr
    assert remaining(state) == ["2026-11-25T11.00.00-b", "2026-11-25T12.00.00-c",
                                "2026-11-25T13.00.00-d"]
    assert "replayed 1, kept 3 of 4" in result.stdout
    assert "1 record(s) not delivered, first 4965721428354628921673306348811965839672873401586" \
        in result.stdout
    assert "function error Permanent.InvalidEvent" in result.stdout
    assert "RequestEntityTooLargeException" in result.stdout


def test_each_record_is_sent_as_it_is_stored_oldest_first(aws):
    env, state = aws
    stored = {name: (state / "bucket" / PREFIX / name).read_text() for name in remaining(state)}
    run(env, "memfault-proxy")

    sent = [json.loads(line) for line in (state / "payloads.jsonl").read_text().splitlines()]
    assert sent == [stored[name] for name in sorted(stored)]
    invokes = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()
               if line.startswith('["lambda"')]
    assert all("proxy-fn" in call and "raw-in-base64-out" in call for call in invokes)


def test_everything_delivered_exits_zero_and_empties_the_bucket(aws):
    env, state = aws
    answers = json.loads((state / "answers.json").read_text())
    (state / "answers.json").write_text(json.dumps(
        {request_id: {"body": {"batchItemFailures": []}} for request_id in answers}))

    result = run(env, "memfault-proxy")

    assert result.returncode == 0, result.stdout + result.stderr
    assert remaining(state) == []


def test_a_dry_run_changes_nothing(aws):
    env, state = aws
    before = remaining(state)

    result = run(env, "memfault-proxy", "--dry-run")

    assert remaining(state) == before
    assert result.stdout.count("would replay") == 4
    assert not (state / "payloads.jsonl").exists()
