"""A relay between the function and cargo-lambda's Runtime API that turns the emulator's
deadline into Lambda's.

Lambda's `Lambda-Runtime-Deadline-Ms` is the invocation's deadline in epoch milliseconds.
cargo-lambda 1.9.2's emulator sends its timeout there instead (600000 for `cargo lambda watch`;
seen on `GET /runtime/invocation/next`), which the function, reading it as Lambda means it,
takes for a deadline in 1970: every upload would find no time left. The function is right for
Lambda, so the emulator's answer is mended here, on the way: a value too small to be an epoch
time is taken as the milliseconds the invocation has, from the moment it is handed out.
Everything else passes through unchanged.

    python3 infra/deadline_relay.py UPSTREAM_URL [PORT]

serves on 127.0.0.1:PORT (a free port when none is given), prints the URL to give the function as
AWS_LAMBDA_RUNTIME_API (without `http://`, as Lambda gives it), and relays to UPSTREAM_URL (e.g.
`http://127.0.0.1:9000/.rt/memfault-chunk-proxy`).
"""

from __future__ import annotations

import http.client
import select
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEADLINE_HEADER = "lambda-runtime-deadline-ms"
# Epoch milliseconds of 2001-09-09: no real invocation deadline is older.
EARLIEST_EPOCH_DEADLINE_MS = 1_000_000_000_000
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def lambda_deadline(value: str, now_ms: int) -> str:
    """The deadline as Lambda sends it, from what the emulator sent."""
    try:
        deadline = int(value)
    except ValueError:
        return value
    if deadline < EARLIEST_EPOCH_DEADLINE_MS:
        return str(now_ms + deadline)
    return value


class DeadlineRelay(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, port: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.upstream_prefix = parsed.path.rstrip("/")
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def runtime_api(self) -> str:
        """What the function gets as AWS_LAMBDA_RUNTIME_API."""
        return f"127.0.0.1:{self.server_address[1]}"

    def start(self) -> DeadlineRelay:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


class _Handler(BaseHTTPRequestHandler):
    server: DeadlineRelay
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._relay()

    def do_POST(self) -> None:  # noqa: N802
        self._relay()

    def _relay(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {name: value for name, value in self.headers.items()
                   if name.lower() not in HOP_BY_HOP}
        # `next` is a long poll: no timeout on the way up.
        upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port)
        try:
            upstream.request(self.command, self.server.upstream_prefix + self.path, body, headers)
            if not self._wait_for(upstream):
                return
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() in HOP_BY_HOP:
                    continue
                if name.lower() == DEADLINE_HEADER:
                    value = lambda_deadline(value, int(time.time() * 1000))
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        finally:
            upstream.close()

    def _wait_for(self, upstream: http.client.HTTPConnection) -> bool:
        """Waits for the upstream's answer; False when the function went away first (stopped
        while polling for its next event), so that the emulator sees the poll end and does not
        hand the next event to a poller nobody reads."""
        assert upstream.sock is not None
        while True:
            readable, _, _ = select.select([upstream.sock, self.connection], [], [])
            if upstream.sock in readable:
                return True
            if not self.connection.recv(1, socket.MSG_PEEK):
                self.close_connection = True
                return False

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main() -> None:
    upstream = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    relay = DeadlineRelay(upstream, port)
    print(relay.runtime_api, flush=True)
    relay.serve_forever()


if __name__ == "__main__":
    main()
