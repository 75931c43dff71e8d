"""A scripted Memfault chunks API on loopback: answers each request as the scenario says, and
records every request (device, chunks, times, status) for the tests' assertions.

The wire format is Memfault's (docs.memfault.com, "Upload Chunk"): `POST
/api/v0/chunks/<serial>` with the `Memfault-Project-Key` header; one chunk is an
`application/octet-stream` body, several are a `multipart/mixed` body, read here with
tests/support.py's multipart_parts, as tests/emulator reads them.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Callable, Iterator

from support import LoopbackServer, multipart_parts

PATH_PREFIX = "/api/v0/chunks/"


@dataclass(frozen=True)
class Request:
    serial: str
    project_key: str | None
    chunks: tuple[bytes, ...]
    multipart: bool
    started: float  # time.time() when the request arrived
    finished: float  # time.time() when it was answered
    status: int


# A rule sees one request (serial, chunks, whether it was multipart) and returns a status, or
# None to leave it to the next rule; a request no rule answers is accepted with 202.
Rule = Callable[[str, tuple[bytes, ...], bool], "int | None"]


def device_fails(serial: str, status: int = 500) -> Rule:
    return lambda device, chunks, multipart: status if device == serial else None


def multipart_larger_than(parts: int, status: int = 413) -> Rule:
    return lambda device, chunks, multipart: status if multipart and len(chunks) > parts else None


def chunk_refused(chunk: bytes, status: int = 400) -> Rule:
    return lambda device, chunks, multipart: status if chunk in chunks else None


def everything(status: int) -> Rule:
    return lambda device, chunks, multipart: status


def in_phases(phases: list[tuple[float, Rule]], then: Rule, origin: float | None = None) -> Rule:
    """Each rule of `phases` for its number of seconds in turn, then `then`: an outage that starts
    and ends, say, or a device failing during time windows (its rule in some phases, `nothing` in
    the others). Counted from `origin` (epoch seconds) when given, such as the time the stream's
    first record is put, so that phases line up with records put on a schedule; else from the
    first request."""
    started: list[float] = [] if origin is None else [origin]
    lock = threading.Lock()

    def rule(device: str, chunks: tuple[bytes, ...], multipart: bool) -> int | None:
        with lock:
            if not started:
                started.append(time.time())
        elapsed = time.time() - started[0]
        for seconds, phase in phases:
            if elapsed < seconds:
                return phase(device, chunks, multipart)
            elapsed -= seconds
        return then(device, chunks, multipart)

    return rule


def nothing(device: str, chunks: tuple[bytes, ...], multipart: bool) -> int | None:
    """No opinion: the next rule, or 202."""
    return None


def seeded_failures(seed: int, share: float, status: int = 500) -> Rule:
    """`share` of the requests fail, drawn from one seeded generator in arrival order. Every
    request draws, a probe's as any other: this is the background noise of a service that is up,
    and what a stall rule must not take for an outage."""
    draw = random.Random(seed)
    lock = threading.Lock()

    def rule(device: str, chunks: tuple[bytes, ...], multipart: bool) -> int | None:
        with lock:
            return status if draw.random() < share else None

    return rule


class ScriptedMemfault(LoopbackServer):
    def __init__(self, rules: list[Rule] | None = None, latency_s: float = 0.0) -> None:
        self.rules = rules or []
        self.latency_s = latency_s
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.in_flight: dict[str, int] = {}
        # Devices that had two requests open at once: Memfault's contract forbids it.
        self.overlaps: list[str] = []
        super().__init__(_Handler)

    def answer(self, serial: str, chunks: tuple[bytes, ...], multipart: bool) -> int:
        for rule in self.rules:
            status = rule(serial, chunks, multipart)
            if status is not None:
                return status
        return 202

    def accepted(self) -> list[Request]:
        """The requests Memfault accepted, in the order they arrived."""
        with self.lock:
            return sorted((r for r in self.requests if r.status == 202), key=lambda r: r.started)

    def chunks_posted(self) -> int:
        with self.lock:
            return sum(len(request.chunks) for request in self.requests)

    def reposts(self, status: int | None = None) -> dict[bytes, int]:
        """For each chunk Memfault had already accepted when it was posted again, how many times
        it was ("re-posts"), whatever the answer, or only those answered `status`.

        Re-posts are a function's probes (a chunk delivered earlier, re-posted to learn whether
        Memfault is up), and the duplicates the design accepts: an environment re-posting a
        record that another environment delivered, having no memory of it. Posts before the first
        acceptance are retries of an undelivered chunk, and not counted. Re-posts answered 202
        leave out the failed ones, which are retried as any failed post is: noise, not a function
        posting the same chunk over and over."""
        counts: dict[bytes, int] = {}
        for request, again in self._reposting():
            if status is None or request.status == status:
                for chunk in again:
                    counts[chunk] = counts.get(chunk, 0) + 1
        return counts

    def reposting_requests(self) -> int:
        """Requests made only of chunks Memfault had already accepted: with one environment, its
        probes (and its re-sends after a timeout); with several, also their duplicates."""
        return sum(len(again) == len(request.chunks) for request, again in self._reposting())

    def _reposting(self) -> Iterator[tuple[Request, list[bytes]]]:
        """Each request in arrival order, with those of its chunks accepted before it."""
        with self.lock:
            requests = sorted(self.requests, key=lambda r: r.started)
        accepted: set[bytes] = set()
        for request in requests:
            yield request, [chunk for chunk in request.chunks if chunk in accepted]
            if request.status == 202:
                accepted.update(request.chunks)


def chunks_of(content_type: str, body: bytes) -> tuple[tuple[bytes, ...], bool]:
    if content_type == "application/octet-stream":
        return (body,), False
    if not content_type.startswith("multipart/mixed; boundary="):
        raise ValueError(f"unexpected Content-Type {content_type!r}")
    return tuple(part.body for part in multipart_parts(content_type, body)), True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ScriptedMemfault

    def do_POST(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        started = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.startswith(PATH_PREFIX):
            self._reply(404)
            return
        serial = self.path[len(PATH_PREFIX):]
        chunks, multipart = chunks_of(self.headers.get("Content-Type", ""), body)
        with self.server.lock:
            self.server.in_flight[serial] = self.server.in_flight.get(serial, 0) + 1
            if self.server.in_flight[serial] > 1:
                self.server.overlaps.append(serial)
        if self.server.latency_s:
            time.sleep(self.server.latency_s)
        status = self.server.answer(serial, chunks, multipart)
        # The request counts as finished before the answer leaves: the function may send the
        # device's next request as soon as it reads this one's.
        with self.server.lock:
            self.server.in_flight[serial] -= 1
            self.server.requests.append(Request(
                serial, self.headers.get("Memfault-Project-Key"), chunks, multipart,
                started, time.time(), status))
        self._reply(status)

    def _reply(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass
