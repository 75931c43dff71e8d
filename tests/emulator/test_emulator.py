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

import email.parser
import email.policy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra"))
from deadline_relay import DeadlineRelay, lambda_deadline  # noqa: E402 (infra/, after the path)
from expectations import EVENTS, EXPECTATIONS, Expect, Upload

REPO = EVENTS.parent
FUNCTION = "memfault-chunk-proxy"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 60
INVOKE_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10
ERROR_TYPE = re.compile(r"^Error: (\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver(ThreadingHTTPServer):
    """Answers every POST with 202, as Memfault does for an accepted chunk, and records it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Received] = []
        super().__init__((LOOPBACK, 0), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def take(self) -> list[Received]:
        with self.lock:
            taken, self.requests = self.requests, []
        return taken


class _ReceiverHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.server.lock:
            self.server.requests.append(Received(self.path, headers, body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def start_group(command: list[str], log: Path, env: dict[str, str] | None = None
                ) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after STOP_TIMEOUT_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


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


def tail(log: Path, lines: int = 12) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"cargo lambda watch exited with {process.returncode}:\n{tail(log)}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"cargo lambda watch did not listen on {port} in {START_TIMEOUT_S} s:\n{tail(log)}")


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
    def __init__(self, logs: Path, receiver: Receiver) -> None:
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
            self.watch_log)
        self.function: subprocess.Popen[bytes] | None = None
        self.settings: dict[str, str] | None = None
        self.starts = 0
        wait_for_port(self.port, self.watch, self.watch_log)
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
        self.function = start_group([str(self.binary)], self.function_log(), env)

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
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def emulator(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
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
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
    chunks = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert part.get_content_type() == "application/octet-stream", part
        assert part["Content-Length"] == str(len(payload)), part
        chunks.append(payload)
    return tuple(chunks)


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
