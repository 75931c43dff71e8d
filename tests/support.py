"""Helpers the Python tests share, each once: free ports and waiting for one, process groups,
moto server, a loopback HTTP server and a recorder of uploads, multipart parsing.

Standard library only: tests/watch_invoke.py runs on the system python3. The pytest suites find
it through `pythonpath` in pyproject.toml, the scripts in tests/ beside them.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import os
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
from typing import Iterator, Mapping

LOOPBACK = "127.0.0.1"
MOTO_START_TIMEOUT_S = 30


class Failed(Exception):
    """A check or a helper process failed; the message says what (scripts print it, exit 1)."""


def free_port() -> int:
    """A loopback port free now, for a process that takes its port on the command line."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
        return True
    except OSError:
        return False


def tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def start_group(command: list[str], log: Path, env: Mapping[str, str] | None = None,
                cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """`command` in a process group of its own (stop_group stops it and all it started), its
    output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = 10,
               signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL)) -> None:
    """Each signal in turn to the process group, until the process is gone within `timeout_s`."""
    for sig in signals:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout_s: float,
                  name: str) -> None:
    """Returns once `port` accepts connections; Failed, with the end of `log`, if the process
    that should listen there exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Failed(f"{name} exited with {process.returncode}:\n{tail(log)}")
        if listening(port):
            return
        time.sleep(0.1)
    raise Failed(f"{name} did not listen on {port} within {timeout_s} s:\n{tail(log)}")


@contextlib.contextmanager
def moto_server(log: Path, env: Mapping[str, str] | None = None) -> Iterator[int]:
    """moto server (every AWS API in one local process) on a free loopback port, stopped on exit;
    yields the port. `env` adds to its environment (moto's settings)."""
    # The interpreter's own: moto is installed in the venv that runs this, which PATH may not name.
    executable = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    port = free_port()
    process = start_group([executable, "-H", LOOPBACK, "-p", str(port)], log,
                          {**os.environ, **(env or {})})
    try:
        wait_for_port(port, process, log, MOTO_START_TIMEOUT_S, "moto_server")
        yield port
    finally:
        stop_group(process)


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server of the harness: loopback, a free port, a thread per request."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__((LOOPBACK, 0), handler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        # A killed function process, or one giving up on a request, resets its connections:
        # expected here, and not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes


class Recorder(LoopbackServer):
    """Answers every POST with 202, as Memfault does for an accepted chunk, and records it.
    Serves from a thread of its own inside `with`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Received] = []
        super().__init__(_RecorderHandler)

    def take(self) -> list[Received]:
        """The requests recorded since the last take, in arrival order."""
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def __enter__(self) -> Recorder:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _RecorderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

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


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]  # names in lower case
    body: bytes


def multipart_parts(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart body, given its Content-Type (which names the boundary).

    Read by the standard library's MIME parser, not split by hand: each part's bytes come back
    exactly as sent (CR, LF and dashes inside a part included). A body the parser finds
    malformed (no closing boundary, say) is a ValueError. The compat32 policy reads a 50-part
    body in about 2 ms, a tenth of the default policy's time: the simulated Memfault of
    tests/esm reads every upload, in the process that also plays the Runtime API."""
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise ValueError(f"not a multipart body: Content-Type {content_type!r}")
    parts = message.get_payload()
    defects = message.defects + [defect for part in parts for defect in part.defects]
    if defects:
        raise ValueError(f"malformed multipart body: {defects}")
    return [Part({name.lower(): str(value) for name, value in part.items()},
                 part.get_payload(decode=True)) for part in parts]
