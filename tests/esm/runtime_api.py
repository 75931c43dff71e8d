"""The Lambda Runtime API on loopback, and the execution environments that run the function
binary against it.

Each environment is one function process with a Runtime API server of its own, so that a
replaced environment can never pick up an invocation meant for its successor. An invocation is
handed out on `GET /2018-06-01/runtime/invocation/next` with the headers Lambda sends (request
id, deadline as wall-clock epoch milliseconds, function ARN, trace id) and ends with the
function's `/response` or `/error`, or with the deadline: then, as on Lambda, the invocation is a
timeout, the process is killed and a new environment takes its place when its turn comes.
"""

from __future__ import annotations

import json
import queue
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from support import LOOPBACK, LoopbackServer, start_group, stop_group

PREFIX = "/2018-06-01/runtime/"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:memfault-chunk-proxy"
STOP_TIMEOUT_S = 5


@dataclass
class Invocation:
    request_id: str
    event: dict[str, Any]
    deadline: float  # epoch seconds, as sent in Lambda-Runtime-Deadline-Ms
    started: float = 0.0
    answered: float | None = None  # epoch seconds the answer arrived; None for a timeout
    kind: str = "timeout"  # "response", "error", "timeout" or "exited"
    body: Any = None
    environment: int = 0

    @property
    def failed(self) -> bool:
        return self.kind != "response"


class _Server(LoopbackServer):
    def __init__(self) -> None:
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.current: Invocation | None = None
        self.done = threading.Event()
        self.closing = threading.Event()
        super().__init__(_Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802
        if self.path != PREFIX + "invocation/next":
            return self._reply(404, b"")
        # Long poll, as Lambda's: the function waits here until there is an invocation.
        while not self.server.closing.is_set():
            try:
                invocation = self.server.pending.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        else:
            return
        invocation.started = time.time()
        self.server.current = invocation
        body = json.dumps(invocation.event).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", invocation.request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(invocation.deadline * 1000)))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
        self.send_header("Lambda-Runtime-Trace-Id", f"Root=1-{int(invocation.started):08x}-"
                         f"{invocation.request_id[:8]}{0:016x};Sampled=0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        current = self.server.current
        for kind in ("response", "error"):
            if current and self.path == f"{PREFIX}invocation/{current.request_id}/{kind}":
                # After the deadline Lambda has already given up on the invocation.
                if current.answered is None and time.time() <= current.deadline:
                    current.answered = time.time()
                    current.kind = kind
                    current.body = json.loads(body) if body else None
                    self.server.done.set()
                return self._reply(202, b'{"status":"OK"}')
        if self.path == PREFIX + "init/error":
            return self._reply(202, b'{"status":"OK"}')
        self._reply(400, b'{"errorType":"InvalidRequestID"}')

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Environment:
    """One execution environment: the function process and its Runtime API."""

    def __init__(self, number: int, binary: Path, env: dict[str, str], log: Path) -> None:
        self.number = number
        self.server = _Server()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.process = start_group([str(binary)], log, {
            **env, "AWS_LAMBDA_RUNTIME_API": f"{LOOPBACK}:{self.server.server_address[1]}"})

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, invocation: Invocation) -> Invocation:
        invocation.environment = self.number
        self.server.done.clear()
        self.server.pending.put(invocation)
        # Lambda stops waiting at the deadline; so does this. A process that exits instead of
        # answering fails the invocation at once.
        while not self.server.done.wait(0.02):
            if time.time() >= invocation.deadline:
                break
            if not self.alive():
                invocation.kind = "exited"
                break
        self.server.current = None
        return invocation

    def stop(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGKILL)
             ) -> None:
        self.server.closing.set()
        stop_group(self.process, STOP_TIMEOUT_S, signals)
        self.server.shutdown()
        self.server.server_close()


class Function:
    """The function as a mapping invokes it: one invocation at a time (a shard or a queue's
    poller with concurrency 1), in warm environments, each replaced after a timeout or a crash.

    `pool` environments take the invocations in turn, round robin: as on Lambda, where a shard's
    successive invocations may land in any of several warm environments, each with its own
    memory (settled records, stall clocks). Round robin rather than a random draw, so that every
    environment of the pool sees a held shard's batch within `pool` invocations: a scenario about
    state one environment keeps and the others lack is then decided by its script, not by luck.
    A pool of 1 is one warm environment, as every scenario had before pools.

    Each environment writes to a log file of its own, function-<n>.log, n being its number in
    the order environments were started (a replacement takes the next number), so that the lines
    of one environment can be told from another's."""

    def __init__(self, binary: Path, env: dict[str, str], timeout_s: float, logs: Path,
                 pool: int = 1) -> None:
        self.binary = binary
        self.env = env
        self.timeout_s = timeout_s
        self.logs = logs
        self.invocations: list[Invocation] = []
        self.environments = 0  # started so far, replacements included
        self.pool = max(1, pool)
        self._pool: list[Environment | None] = [None] * self.pool

    def invoke(self, event: dict[str, Any]) -> Invocation:
        slot = len(self.invocations) % self.pool
        environment = self._pool[slot]
        if environment is None or not environment.alive():
            environment = self._replace(slot)
        invocation = Invocation(f"{len(self.invocations) + 1:08x}-0000-4000-8000-000000000000",
                                event, deadline=time.time() + self.timeout_s)
        self.invocations.append(environment.run(invocation))
        if invocation.kind == "timeout":
            # Lambda replaces a timed-out environment without giving it time to clean up.
            environment.stop((signal.SIGKILL,))
            self._pool[slot] = None
        return invocation

    def _replace(self, slot: int) -> Environment:
        previous = self._pool[slot]
        if previous:
            previous.stop()
        self.environments += 1
        environment = Environment(self.environments, self.binary, self.env,
                                  self.log(self.environments))
        self._pool[slot] = environment
        return environment

    def log(self, environment: int) -> Path:
        """The log file of environment number `environment`."""
        return self.logs / f"function-{environment}.log"

    def stop(self) -> None:
        for slot, environment in enumerate(self._pool):
            if environment:
                environment.stop()
                self._pool[slot] = None

    def log_lines(self, environment: int | None = None) -> list[dict[str, Any]]:
        """The JSON lines the function wrote (logs and embedded metrics), in every environment
        (one after the other, in the order they were started) or in `environment` alone."""
        numbers = [environment] if environment is not None else range(1, self.environments + 1)
        lines = []
        for number in numbers:
            for line in self.log(number).read_text(errors="replace").splitlines():
                try:
                    parsed = json.loads(line)
                except ValueError:
                    continue
                if isinstance(parsed, dict):
                    lines.append(parsed)
        return lines
