"""`make watch-invoke` (part of `make test`): `make watch` and `make invoke`, run as the README and
docs/development.md tell a person to run them, and checked.

For each session below: `make watch [EVENT=...]` starts in the background (its own process
group, as in a shell of its own), and once its emulator listens, `make invoke EVENT=...` sends
each sample. Every answer (or errorType) must be the one tests/emulator/expectations.py gives for
that sample, and what the local receiver printed in the watch shell must be those uploads: the
serial in the path, the project key shortened, each chunk's size, one device's requests in
order. Then watch is stopped as a person stops it (Ctrl-C: SIGINT to its process group) and must
be gone, with both ports free, within a few seconds.

Ports are free ones picked here (LAMBDA_PORT, RECEIVER_PORT, given to both targets as a person
would), so that the run does not meet a `make watch` someone left running on the defaults.

    PYTHONPATH=infra python3 tests/watch_invoke.py   (make watch-invoke; from the repository root, make and cargo on PATH)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from project_key import shorten
from support import Failed, free_port, listening, start_group, wait_for_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "emulator"))
from expectations import EXPECTATIONS, Expect, Upload  # noqa: E402

START_TIMEOUT_S = 900  # the first `make watch` builds the function and the receiver
INVOKE_TIMEOUT_S = 120
STOP_TIMEOUT_S = 15
RECEIVED = "== received by the local receiver"
ERROR_TYPE = re.compile(r"^Error: (\S+)", re.MULTILINE)


@dataclass(frozen=True)
class Session:
    watch_event: str | None  # EVENT of `make watch`; None: the default, as the README has it
    invokes: tuple[str, ...]  # samples under events/, sent with `make invoke EVENT=events/...`


# The README's and docs/development.md's commands: `make watch`, then
# `make invoke EVENT=events/heartbeat.json`; a batch and a refused sample on the same watch; a
# sample with settings of its own under `make watch EVENT=<that sample>`, with its sibling
# that shares the settings.
SESSIONS = (
    Session(None, ("heartbeat.json", "sqs-batch.json", "bad/topic-mismatch.json")),
    Session("guide/project-a.json", ("guide/project-a.json", "guide/project-b.json")),
)


class Watch:
    """`make watch` in the background, its output in a file."""

    def __init__(self, event: str | None, ports: dict[str, str], log: Path) -> None:
        self.log = log
        self.ports = ports
        command = ["make", "--no-print-directory", "watch", *(f"{k}={v}" for k, v in ports.items())]
        if event:
            command.append(f"EVENT=events/{event}")
        print(f"$ {' '.join(command)} &", flush=True)
        self.process = start_group(command, log, cwd=REPO)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Until both ports accept connections: cargo lambda's emulator and the local receiver."""
        for name in ("LAMBDA_PORT", "RECEIVER_PORT"):
            wait_for_port(int(self.ports[name]), self.process, self.log, START_TIMEOUT_S,
                          f"make watch ({name})")

    def stop(self) -> None:
        """Ctrl-C, as in the shell it runs in; then the whole group must be gone."""
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        # make (the group's leader) is reaped first: a zombie leader keeps the group "alive".
        while time.monotonic() < deadline and (self.process.poll() is None or group_alive(group)):
            time.sleep(0.2)
        if group_alive(group):
            left = subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(group)],
                                  capture_output=True, text=True, check=False).stdout
            os.killpg(group, signal.SIGKILL)
            raise Failed(f"make watch was still running {STOP_TIMEOUT_S} s after Ctrl-C:\n{left}")
        self.process.wait(5)
        busy = [name for name, port in self.ports.items() if listening(int(port))]
        if busy:
            raise Failed(f"after make watch stopped, still listening: {busy}")


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


def invoke(event: str, ports: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = ["make", "--no-print-directory", "invoke", f"EVENT=events/{event}",
               f"LAMBDA_PORT={ports['LAMBDA_PORT']}"]
    print(f"$ {' '.join(command)}", flush=True)
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          timeout=INVOKE_TIMEOUT_S, stdin=subprocess.DEVNULL)


def check_answer(event: str, expect: Expect, done: subprocess.CompletedProcess[str]) -> None:
    context = f"make invoke EVENT=events/{event} exited {done.returncode}\n{done.stdout}{done.stderr}"
    if expect.error_type:
        found = ERROR_TYPE.search(done.stderr)
        if done.returncode == 0 or not found or found.group(1) != expect.error_type:
            raise Failed(f"wanted errorType {expect.error_type}: {context}")
        return
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise Failed(context)
    try:
        answer = json.loads(lines[-1])
    except json.JSONDecodeError as error:
        raise Failed(f"the answer is not JSON ({error}): {context}") from None
    if answer != expect.response:
        raise Failed(f"answer {answer}, wanted {expect.response}: {context}")


def received(text: str) -> list[tuple[str, str, list[int]]]:
    """The receiver's printout: (serial, shown project key, sizes of the chunks) per request."""
    requests = []
    for block in text.split(RECEIVED)[1:]:
        path = re.search(r"^POST /api/v0/chunks/(\S+)$", block, re.MULTILINE)
        key = re.search(r"^\s*memfault-project-key: (\S+)$", block, re.MULTILINE)
        # A multipart body is shown as "body (N bytes): K parts", then a line per part.
        sizes = (re.findall(r"^\s*part \d+ \((\d+) bytes\)", block, re.MULTILINE)
                 or re.findall(r"^\s*body \((\d+) bytes\)", block, re.MULTILINE))
        if not path or not key or not sizes:
            raise Failed(f"the receiver printed a request this check cannot read:\n{block}")
        requests.append((path.group(1), key.group(1), [int(size) for size in sizes]))
    return requests


def wanted(uploads: tuple[Upload, ...]) -> list[tuple[str, str, list[int]]]:
    return [(u.serial, shorten(u.project_key), [len(c) for c in u.chunks]) for u in uploads]


def check_received(event: str, expect: Expect, watch: Watch, seen: int) -> int:
    """Waits for the uploads of one invoke to be printed; returns how many requests are seen."""
    deadline = time.monotonic() + 10
    while True:
        requests = received(watch.text())
        fresh = requests[seen:]
        if len(fresh) >= len(expect.uploads) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    # Different devices' uploads run in parallel: compare each device's requests, in order.
    by_serial = lambda items: {s: [i for i in items if i[0] == s] for s, _, _ in items}  # noqa: E731
    if by_serial(fresh) != by_serial(wanted(expect.uploads)) or len(fresh) != len(expect.uploads):
        raise Failed(f"events/{event}: the receiver printed {fresh}, wanted "
                     f"{wanted(expect.uploads)}\n{watch.text()[-3000:]}")
    return len(requests)


def run_session(session: Session, ports: dict[str, str], log: Path) -> None:
    watch = Watch(session.watch_event, ports, log)
    try:
        run_invokes(session, watch, ports)
    except BaseException:
        try:
            watch.stop()
        except Failed as also:
            print(f"(and: {also})")
        raise
    watch.stop()
    print("--> make watch stopped on Ctrl-C, its ports free", flush=True)


def run_invokes(session: Session, watch: Watch, ports: dict[str, str]) -> None:
    watch.wait_ready()
    seen = len(received(watch.text()))
    for event in session.invokes:
        expect = EXPECTATIONS[event]
        check_answer(event, expect, invoke(event, ports))
        seen = check_received(event, expect, watch, seen)
        outcome = expect.error_type or "answered as expected"
        print(f"--> events/{event}: {outcome}, {len(expect.uploads)} request(s) printed "
              "by the receiver", flush=True)
    if '"_aws"' in watch.text():
        raise Failed("make watch showed the metric documents (EMF) without VERBOSE=1")


def main() -> int:
    ports = {"LAMBDA_PORT": str(free_port()), "RECEIVER_PORT": str(free_port())}
    with tempfile.TemporaryDirectory(prefix="watch-invoke-") as work:
        try:
            for number, session in enumerate(SESSIONS):
                run_session(session, ports, Path(work) / f"watch-{number}.log")
        except (Failed, subprocess.TimeoutExpired) as failure:
            print(f"watch-invoke: FAILED: {failure}")
            return 1
    print("watch-invoke: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
