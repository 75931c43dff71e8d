"""Fixtures of the event source mapping suite: the function binary, moto server as the failure
queue's SQS (SigV4 checked), a delaying proxy in front of it, the scripted Memfault, and the
function's environments. Every process and server started here is stopped when its test ends,
also on failure; every wait is bounded.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import boto3
import botocore.exceptions
import pytest

from esm import ACCOUNT, REGION
from memfault import Rule, ScriptedMemfault
from runtime_api import Function
from support import LOOPBACK, moto_server

REPO = Path(__file__).resolve().parents[2]
# moto answers the first N requests without checking who signed them: the role, its policy and
# the session of the function's identity are made with those; every later request, the
# function's included, must carry a valid SigV4 signature and be allowed by the role's policy.
SETUP_ACTIONS = 3
ROLE_POLICY = """{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]}"""
TRUST_POLICY = """{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}"""


@pytest.fixture(scope="session")
def binary() -> Path:
    path = Path(os.environ.get("ESM_FUNCTION_BINARY", REPO / "target/debug/memfault-chunk-proxy"))
    if not path.is_file():
        pytest.fail(f"{path} does not exist: build it with `cargo build --locked` (`make esm` does)")
    return path


@dataclass
class Moto:
    url: str
    credentials: dict[str, str]

    def sqs(self) -> Any:
        return boto3.client("sqs", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=self.credentials["AccessKeyId"],
                            aws_secret_access_key=self.credentials["SecretAccessKey"],
                            aws_session_token=self.credentials["SessionToken"])


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    # A SIGTERM (make or CI stopping the run) unwinds like Ctrl-C, so that teardowns still run.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    try:
        with moto_server(log, {"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_ACTIONS)}) as port:
            url = f"http://{LOOPBACK}:{port}"
            anonymous = {"endpoint_url": url, "region_name": REGION,
                         "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
            iam = boto3.client("iam", **anonymous)
            role = iam.create_role(RoleName="memfault-chunk-proxy",
                                   AssumeRolePolicyDocument=TRUST_POLICY)["Role"]
            iam.put_role_policy(RoleName="memfault-chunk-proxy", PolicyName="quarantine-queue",
                                PolicyDocument=ROLE_POLICY)
            # A session with a token, like the credentials Lambda gives a function.
            credentials = boto3.client("sts", **anonymous).assume_role(
                RoleArn=role["Arn"], RoleSessionName="memfault-chunk-proxy")["Credentials"]
            # From here on, signatures count: a request signed with the wrong secret is refused.
            forged = {**credentials, "SecretAccessKey": "not-the-secret"}
            with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch"):
                Moto(url, forged).sqs().list_queues()
            yield Moto(url, credentials)
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Quarantined:
    group: str
    sent: float  # epoch seconds
    body: str


@dataclass
class QuarantineQueue:
    url: str
    client: Any

    def drain(self) -> list[Quarantined]:
        """Every message, in the order the queue hands them out."""
        messages = []
        while True:
            received = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                MessageSystemAttributeNames=["MessageGroupId", "SentTimestamp"])
            batch = received.get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                attributes = message["Attributes"]
                messages.append(Quarantined(attributes.get("MessageGroupId", ""),
                                            int(attributes["SentTimestamp"]) / 1000,
                                            message["Body"]))
                self.client.delete_message(QueueUrl=self.url,
                                           ReceiptHandle=message["ReceiptHandle"])


_queue_numbers = itertools.count(1)


@pytest.fixture
def quarantine_queue(moto: Moto) -> QuarantineQueue:
    client = moto.sqs()
    name = f"memfault-failures-{next(_queue_numbers)}.fifo"
    client.create_queue(QueueName=name, Attributes={"FifoQueue": "true"})
    # The URL the function is given, with the account and name as on AWS; requests go to moto.
    return QuarantineQueue(f"{moto.url}/{ACCOUNT}/{name}", client)


class DelayingProxy:
    """A TCP proxy that passes requests on at once and holds every answer back for `delay_s`:
    a quarantine queue that accepts a write but answers late."""

    def __init__(self, upstream: str, delay_s: float) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.delay_s = delay_s
        self.listener = socket.create_server((LOOPBACK, 0))
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, self.delay_s),
                             daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, delay_s: float) -> None:
        try:
            while data := source.recv(65536):
                time.sleep(delay_s)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closing = True
        self.listener.close()


@pytest.fixture
def delaying_proxy() -> Iterator[Callable[[str, float], DelayingProxy]]:
    proxies: list[DelayingProxy] = []

    def start(upstream: str, delay_s: float) -> DelayingProxy:
        proxies.append(DelayingProxy(upstream, delay_s))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.close()


@pytest.fixture
def memfault() -> Iterator[Callable[..., ScriptedMemfault]]:
    servers: list[ScriptedMemfault] = []

    def start(rules: list[Rule], latency_s: float = 0.0) -> ScriptedMemfault:
        server = ScriptedMemfault(rules, latency_s)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def function(binary: Path, moto: Moto, tmp_path: Path) -> Iterator[Callable[..., Function]]:
    """Starts the function with the suite's base environment plus `env`; `timeout_s` is the
    function's Lambda timeout, `pool` the number of execution environments taking its
    invocations in turn."""
    started: list[Function] = []

    def start(env: dict[str, str], timeout_s: float, pool: int = 1) -> Function:
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_FUNCTION_NAME": "memfault-chunk-proxy",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_STREAM_NAME": "esm",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/memfault-chunk-proxy",
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": moto.credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": moto.credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": moto.credentials["SessionToken"],
        }
        started.append(Function(binary, {**base, **env}, timeout_s, tmp_path, pool))
        return started[-1]

    yield start
    for function in started:
        function.stop()


# The production ratios each stream scenario ran at (test_esm.note_ratios), for the run's summary.
# A scenario records its line on its own test report, which pytest-xdist carries from the worker
# that ran it to the process that prints the summary.
RATIOS: list[str] = []
RATIO_PROPERTY = "production ratios"


@pytest.fixture
def ratios(request: pytest.FixtureRequest) -> Callable[[str], None]:
    return lambda line: request.node.user_properties.append((RATIO_PROPERTY, line))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        RATIOS.extend(line for name, line in report.user_properties if name == RATIO_PROPERTY)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RATIOS:
        terminalreporter.section("stream scenarios at production's ratios")
        for line in sorted(RATIOS):
            terminalreporter.write_line(line)
