"""`make deploy-path`: the documented deploy commands, run as a user runs them, up to the point
where CloudFormation would change the stack; fails where a user's run would fail.

From a copy of the repository (so the guided run's answers do not touch this one):
  1. `make deploy-guided`, answering every question with Enter (the defaults) except the hidden
     ones, the project key and the slug map, given as "-" (none: the key comes from each topic;
     SAM asks for a NoEcho parameter until it gets a value). Then: SAM read and wrote the repository's samconfig.toml (not one in
     the build folder), uploaded the code, and asked CloudFormation for a change set of the stack
     with those parameters; the answer to "Deploy this changeset?" is the default, no.
  2. `make deploy`: the same, non-interactive, with the answers saved by step 1.

AWS is moto server (PyPI, pinned in infra/requirements-moto.txt) on loopback, through
AWS_ENDPOINT_URL, with made-up credentials: nothing leaves the machine. Two stand-ins, each for
what cannot run here quickly or at all:
  - the build: `make sam-build` is skipped (`make -o sam-build`, the release build takes
    minutes; it is covered by its own documentation and `make dist`). Its output is made with
    SAM's own post-build step (samcli's move_template, which rewrites the template's local paths
    for the build folder) around a stand-in `bootstrap`;
  - SAM's managed bucket stack, created beforehand from SAM's own template: moto runs a change
    set's resources but not its Outputs, which SAM reads to find the bucket.

    python infra/deploy_path.py     (in .venv with the template tools and moto)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import boto3
from samcli.commands._utils.template import get_template_data, move_template, get_template_parameters
from samcli.lib.bootstrap.bootstrap import SAM_CLI_STACK_NAME, _get_stack_template

from samconfig_architecture import deployed_architecture

REPO = Path(__file__).resolve().parents[1]
ARCH = "arm64"  # the Makefile's default ARCH, as a user's first run has it
STACK = "memfault-chunk-proxy"
FUNCTION = "ProxyFunction"
NO_KEY = "-"
RUN_TIMEOUT_S = 180


class Failed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto(port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                                   "127.0.0.1", "-p", str(port)], stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None:
                raise Failed(f"moto server exited: {log.read_text()}")
            time.sleep(0.2)
    raise Failed("moto server did not listen within 30 s")


def copy_repository(work: Path) -> None:
    for name in ("Makefile", "samconfig.toml", "template.yaml", "LICENSE", "README.md"):
        shutil.copy2(REPO / name, work / name)
    shutil.copytree(REPO / "infra", work / "infra",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (work / ".venv").symlink_to(REPO / ".venv")


def stand_in_build(work: Path) -> Path:
    """What `make sam-build ARCH=arm64` leaves in .aws-sam/build-arm64, bootstrap aside."""
    build = work / ".aws-sam" / f"build-{ARCH}"
    artifact = build / FUNCTION
    artifact.mkdir(parents=True)
    bootstrap = artifact / "bootstrap"
    bootstrap.write_text("#!/bin/sh\n# stand-in for the function binary\n")
    bootstrap.chmod(0o755)
    template = get_template_data(str(work / "template.yaml"))
    template["Resources"][FUNCTION]["Properties"]["CodeUri"] = str(artifact)
    move_template(str(work / "template.yaml"), str(build / "template.yaml"), template)
    return build


def run(command: list[str], work: Path, env: dict[str, str], answers: str) -> str:
    print(f"$ {' '.join(command)}", flush=True)
    # A session of its own, without a terminal: SAM's hidden prompt (the NoEcho project key)
    # then reads standard input, as the visible ones do.
    done = subprocess.run(command, cwd=work, env=env, input=answers, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, start_new_session=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise Failed(f"{' '.join(command)} exited {done.returncode}:\n{output[-4000:]}")
    return output


def check_change_set(cloudformation, expected: dict[str, str], count: int) -> None:
    change_sets = cloudformation.list_change_sets(StackName=STACK)["Summaries"]
    if len(change_sets) != count:
        raise Failed(f"expected {count} change set(s) of {STACK}, CloudFormation has "
                     f"{[c['ChangeSetName'] for c in change_sets]}")
    latest = cloudformation.describe_change_set(
        StackName=STACK, ChangeSetName=change_sets[-1]["ChangeSetId"])
    given = {p["ParameterKey"]: p.get("ParameterValue") for p in latest.get("Parameters", [])}
    wrong = {name: (value, given.get(name)) for name, value in expected.items()
             if given.get(name) != value}
    if wrong:
        raise Failed(f"change set parameters (wanted, given): {wrong}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="deploy-path-"))
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update({
        # "localhost": moto finds a template that SAM uploaded by the TemplateURL's path only
        # when the URL names that host.
        "AWS_ENDPOINT_URL": f"http://localhost:{port}",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(work / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        "SAM_CLI_TELEMETRY": "0", "MAKEFLAGS": "",
    })
    server = None
    try:
        copy_repository(work)
        build = stand_in_build(work)
        server = start_moto(port, work / "moto.log")
        os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
        cloudformation = boto3.client("cloudformation")
        cloudformation.create_stack(StackName=SAM_CLI_STACK_NAME,
                                    TemplateBody=_get_stack_template(),
                                    Tags=[{"Key": "ManagedStackSource", "Value": "AwsSamCli"}])

        # 1. The first deploy, guided. Enter for every question but the hidden ones (the project
        # key and the slug map), which take "-"; the last Enter declines to execute the change set.
        parameters = get_template_parameters(str(build / "template.yaml"))
        answers = "\n\n" + "".join(f"{NO_KEY}\n" if str(props.get("NoEcho")).lower() == "true"
                                   else "\n" for props in parameters.values()) + "\n" * 20
        output = run(["make", "-o", "sam-build", "deploy-guided"], work, env, answers)
        if "Changeset created successfully" not in output:
            raise Failed(f"the guided deploy created no change set:\n{output[-3000:]}")
        if (build / "samconfig.toml").exists():
            raise Failed("the guided run saved its answers in the build folder, which the next "
                         "build wipes")
        saved = tomllib.loads((work / "samconfig.toml").read_text())["default"]
        saved_parameters = saved["deploy"]["parameters"]
        if saved["global"]["parameters"].get("stack_name") != STACK:
            raise Failed(f"samconfig.toml after the guided run: {saved}")
        if deployed_architecture(work / "samconfig.toml") != ARCH:
            raise Failed("the guided answers were not saved: parameter_overrides="
                         f"{saved_parameters.get('parameter_overrides')!r}")
        check_change_set(cloudformation, {"Architecture": ARCH, "MemfaultProjectKey": NO_KEY,
                                          "ProjectKeys": NO_KEY, "Mode": "Direct"}, 1)
        print("--> the guided deploy read and saved the repository's samconfig.toml, took '-' "
              "for the hidden parameters, uploaded the code and created the change set", flush=True)

        # 2. Later deploys: the saved answers, no questions but the change set's.
        output = run(["make", "-o", "sam-build", "deploy"], work, env, "\n" * 5)
        if "Changeset created successfully" not in output:
            raise Failed(f"make deploy created no change set:\n{output[-3000:]}")
        check_change_set(cloudformation, {"Architecture": ARCH, "Mode": "Direct"}, 2)
        print("--> make deploy used the saved answers and created the change set", flush=True)
    except (Failed, subprocess.TimeoutExpired) as failure:
        print(f"deploy-path: FAILED: {failure}")
        return 1
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    print("deploy-path: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
