"""Every sample event through cargo-lambda's Lambda emulator, the Runtime API as cargo-lambda
implements it (our own tests/integration/binary.rs and the bench use a mock of ours).

`cargo lambda watch --only-lambda-apis` serves the Runtime API and the invoke API on a free
loopback port; the function binary that `cargo test` built polls it, configured as `cargo lambda
watch` configures a function it starts, and forwards to a receiver on loopback that answers 202
like Memfault and records every request. Each event in events/ is sent with `cargo lambda invoke`,
and what reached the receiver (paths, project key, bytes, order per device) and the function's
answer or errorType are compared with expectations.py. A sample with settings of its own
(`events/NAME.env` beside `events/NAME.json`, as `make local` reads them) runs in a function
process started with them.

The function is started here rather than by `cargo lambda watch` itself, which would `cargo run`
it: that builds the binary without the dev-dependencies' features that `cargo test` enables, so
after `cargo test` it compiles about 40 crates again (over a minute on two cores) for the same
code. Every process started here runs in its own process group and is stopped when the session
ends, also on failure; every wait is bounded.

Run through `make emulator` (part of `make test`), which runs it with uv run: cargo-lambda from .venv on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from deadline_relay import DeadlineRelay, lambda_deadline
from expectations import EVENTS, EXPECTATIONS, Expect, Upload
from support import (LOOPBACK, Received, Recorder, free_port, multipart_parts, start_group,
                     stop_group, tail, wait_for_port)

REPO = EVENTS.parent
FUNCTION = "memfault-chunk-proxy"
START_TIMEOUT_S = 60
INVOKE_TIMEOUT_S = 60
ERROR_TYPE = re.compile(r"^Error: (\S+)", re.MULTILINE)


def sample_settings(event_file: str) -> dict[str, str]:
    """The KEY=VALUE lines of the sample's `.env` file beside it (`#` comments), if it has one."""
    path = (EVENTS / event_file).with_suffix(".env")
    if not path.exists():
        return {}
    settings = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        assert equals, f"{path} line {number}: expected KEY=VALUE, found {line!r}"
        settings[name.strip()] = value.strip()
    return settings


def function_binary() -> Path:
    """The binary `cargo test` builds (and `make test` has just built): asking cargo for it
    rebuilds nothing when it is fresh."""
    build = subprocess.run(["cargo", "test", "--locked", "--no-run", "--message-format=json"],
                           cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stderr
    for line in build.stdout.splitlines():
        message = json.loads(line)
        if (message.get("reason") == "compiler-artifact" and message["target"]["kind"] == ["bin"]
                and message["target"]["name"] == FUNCTION and not message["profile"]["test"]):
            return Path(message["executable"])
    pytest.fail(f"cargo test --no-run built no {FUNCTION} binary")


class Emulator:
    def __init__(self, logs: Path, receiver: Recorder) -> None:
        if shutil.which("cargo-lambda") is None:
            pytest.fail("cargo-lambda is not on PATH: run this through `make emulator`")
        self.logs = logs
        self.receiver = receiver
        self.binary = function_binary()
        self.port = free_port()
        self.watch_log = logs / "cargo-lambda-watch.log"
        self.watch = start_group(
            ["cargo", "lambda", "watch", "--only-lambda-apis",
             "--invoke-address", LOOPBACK, "--invoke-port", str(self.port)],
            self.watch_log, cwd=REPO)
        self.function: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, str] | None = None
        self.starts = 0
        wait_for_port(self.port, self.watch, self.watch_log, START_TIMEOUT_S,
                      "cargo lambda watch")
        # cargo-lambda sends its timeout where Lambda sends the deadline (deadline_relay.py).
        self.relay = DeadlineRelay(f"http://{LOOPBACK}:{self.port}/.rt/{FUNCTION}").start()

    def function_log(self) -> Path:
        return self.logs / f"function-{self.starts}.log"

    def use(self, settings: dict[str, str]) -> None:
        """Runs the function with these settings, restarting it if they differ."""
        if self.settings == settings and self.function and self.function.poll() is None:
            return
        if self.function:
            stop_group(self.function)
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("MEMFAULT_", "AWS_"))}
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": FUNCTION,
            "AWS_LAMBDA_FUNCTION_VERSION": "1",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "4096",
            "AWS_LAMBDA_MAX_CONCURRENCY": "1",
            "AWS_LAMBDA_RUNTIME_API": self.relay.runtime_api,
            "MEMFAULT_CHUNKS_URL": self.receiver.url,
            **settings,
        })
        self.settings = settings
        self.starts += 1
        self.function = start_group([str(self.binary)], self.function_log(), env, REPO)

    def invoke(self, event_file: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["cargo", "lambda", "invoke", "--invoke-address", LOOPBACK,
             "--invoke-port", str(self.port), "--data-file", str(EVENTS / event_file), FUNCTION],
            cwd=REPO, capture_output=True, text=True, timeout=INVOKE_TIMEOUT_S,
            env={**os.environ, "CARGO_LAMBDA_COLOR": "never"})

    def stop(self) -> None:
        for process in (self.function, self.watch):
            if process:
                stop_group(process)
        self.relay.shutdown()
        self.relay.server_close()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


@pytest.fixture(scope="session")
def emulator(receiver: Recorder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    # A SIGTERM (make or CI stopping the run) unwinds like Ctrl-C, so the teardown below still
    # stops the process groups, which do not share the test's own.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = Emulator(tmp_path_factory.mktemp("emulator"), receiver)
    try:
        yield started
    finally:
        started.stop()
        signal.signal(signal.SIGTERM, previous)


def test_the_relay_turns_the_emulators_timeout_into_a_deadline() -> None:
    now_ms = 1_796_000_000_000
    assert lambda_deadline("600000", now_ms) == str(now_ms + 600_000)
    assert lambda_deadline(str(now_ms + 3_000), now_ms) == str(now_ms + 3_000)
    assert lambda_deadline("soon", now_ms) == "soon"


def event_files() -> set[str]:
    return {path.relative_to(EVENTS).as_posix() for path in EVENTS.rglob("*.json")}


def test_every_event_file_has_an_expectation() -> None:
    files = event_files()
    assert files, f"no events under {EVENTS}"
    missing = sorted(files - EXPECTATIONS.keys())
    stale = sorted(EXPECTATIONS.keys() - files)
    assert not missing, f"events without an entry in tests/emulator/expectations.py: {missing}"
    assert not stale, f"entries in tests/emulator/expectations.py without an event file: {stale}"
    orphans = sorted(path.relative_to(EVENTS).as_posix() for path in EVENTS.rglob("*.env")
                     if not path.with_suffix(".json").exists())
    assert not orphans, f"settings files without the event they belong to: {orphans}"


def chunks_of(request: Received) -> tuple[bytes, ...]:
    """The chunks one request carries: the body, or each part of a multipart/mixed body."""
    content_type = request.headers.get("content-type", "")
    if content_type == "application/octet-stream":
        return (request.body,)
    assert content_type.startswith("multipart/mixed; boundary="), content_type
    parts = multipart_parts(content_type, request.body)
    for part in parts:
        assert part.headers.get("content-type") == "application/octet-stream", part
        assert part.headers.get("content-length") == str(len(part.body)), part
    return tuple(part.body for part in parts)


def check_uploads(expected: tuple[Upload, ...], received: list[Received]) -> None:
    by_path: dict[str, list[Received]] = {}
    for request in received:
        by_path.setdefault(request.path, []).append(request)
    wanted: dict[str, list[Upload]] = {}
    for upload in expected:
        wanted.setdefault(f"/api/v0/chunks/{upload.serial}", []).append(upload)

    assert sorted(by_path) == sorted(wanted), "paths that reached the receiver"
    for path, uploads in wanted.items():
        requests = by_path[path]
        assert [request.headers.get("memfault-project-key") for request in requests] == \
            [upload.project_key for upload in uploads], f"{path}: project keys"
        assert [chunks_of(request) for request in requests] == \
            [upload.chunks for upload in uploads], f"{path}: chunks, in order"
        for request in requests:
            assert request.headers.get("user-agent", "").startswith("memfault-chunk-proxy/")


@pytest.mark.parametrize("event_file", list(EXPECTATIONS))
def test_event_through_the_emulator(event_file: str, emulator: Emulator) -> None:
    expect: Expect = EXPECTATIONS[event_file]
    emulator.use(sample_settings(event_file))
    emulator.receiver.take()

    result = emulator.invoke(event_file)

    context = (f"cargo lambda invoke exited {result.returncode}\nstdout: {result.stdout}\n"
               f"stderr: {result.stderr}\nfunction log:\n{tail(emulator.function_log())}")
    assert emulator.function.poll() is None, f"the function exited\n{context}"
    if expect.error_type:
        assert result.returncode != 0, context
        found = ERROR_TYPE.search(result.stderr)
        assert found and found.group(1) == expect.error_type, context
    else:
        assert result.returncode == 0, context
        assert json.loads(result.stdout) == expect.response, context
    check_uploads(expect.uploads, emulator.receiver.take())
