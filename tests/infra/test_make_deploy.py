"""The Makefile's deploy targets hand every setting on: `make deploy STACK=...` deploys that stack,
and `make deploy-cargo-lambda` gives the function every MEMFAULT_... variable a layout needs. make
runs in a copy of the repository's deploy files, with stand-ins for `sam` and `cargo` that record
what they were given (the builds they depend on are taken as done: `make -o`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECORDER = """#!/bin/sh
printf '%s\\n' "$@" > "$RECORDS/$(basename "$0").args"
# cargo lambda deploy: keep the env file, which is removed once the deploy returns.
while [ $# -gt 0 ]; do [ "$1" = --env-file ] && cp "$2" "$RECORDS/env-file"; shift; done
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    (work / "infra").mkdir(parents=True)
    for name in ("Makefile", "samconfig.toml", "template.yaml"):
        shutil.copy2(REPO / name, work / name)
    for name in ("sam_deploy.py", "cargo_lambda_deploy.py", "project_key.py"):
        shutil.copy2(REPO / "infra" / name, work / "infra" / name)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for tool in ("sam", "cargo"):
        (stubs / tool).write_text(RECORDER)
        (stubs / tool).chmod(0o755)
    return work


def make(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    records = work.parent
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("MEMFAULT_", "MAKE")) and name not in ("STACK", "ARCH", "PARAMS",
                                                                           "CONFIG_ENV", "LAMBDA_ROLE_ARN")}
    env.update(PATH=f"{records / 'bin'}:{env['PATH']}", RECORDS=str(records))
    # RUN= runs the tools from PATH, the stand-ins, rather than from the project's .venv.
    return subprocess.run(["make", "--no-print-directory", "RUN=", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)


def recorded(work: Path, tool: str) -> list[str]:
    return (work.parent / f"{tool}.args").read_text().splitlines()


@pytest.mark.parametrize("config_env", ["default", "dev"])
@pytest.mark.parametrize("target", ["deploy", "deploy-guided"])
def test_the_stack_given_is_the_stack_deployed(checkout: Path, target: str, config_env: str) -> None:
    done = make(checkout, "-o", "sam-build", target, "STACK=fleet-chunks", f"CONFIG_ENV={config_env}")
    assert done.returncode == 0, done.stdout + done.stderr
    words = recorded(checkout, "sam")
    assert words[words.index("--stack-name") + 1] == "fleet-chunks"
    assert words[words.index("--config-env") + 1] == config_env


def test_without_stack_the_environment_names_the_stack(checkout: Path) -> None:
    done = make(checkout, "-o", "sam-build", "deploy", "CONFIG_ENV=dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--stack-name" not in recorded(checkout, "sam")


def test_a_stack_name_cloudformation_would_refuse_is_refused_first(checkout: Path) -> None:
    done = make(checkout, "-o", "sam-build", "deploy", "STACK=fleet_chunks")
    assert done.returncode != 0
    assert "STACK='fleet_chunks' is no CloudFormation stack name" in done.stderr
    assert not (checkout.parent / "sam.args").exists()


def test_cargo_lambda_deploys_every_setting_of_the_layout(checkout: Path) -> None:
    keys = "project-a=aaaabbbbcccc1111,project-b=ddddeeeeffff2222"
    done = make(checkout, "-o", "lambda-build", "deploy-cargo-lambda", "STACK=fleet-chunks",
                "LAMBDA_ROLE_ARN=arn:aws:iam::123456789012:role/example",
                "MEMFAULT_TOPIC_PATTERN=fleet/{project_slug}/devices/{device_serial}/#",
                f"MEMFAULT_PROJECT_KEYS={keys}", "MEMFAULT_STALL_LIMIT_SECONDS=120")
    assert done.returncode == 0, done.stdout + done.stderr
    words = recorded(checkout, "cargo")
    assert words[:3] == ["lambda", "deploy", "--lambda-dir"]
    assert "--env-var" not in words  # cargo-lambda cuts an --env-var value at its commas
    assert words[words.index("--tag") + 1] == "project=fleet-chunks"
    assert (checkout.parent / "env-file").read_text().splitlines() == [
        f"MEMFAULT_PROJECT_KEYS='{keys}'",
        "MEMFAULT_STALL_LIMIT_SECONDS='120'",
        "MEMFAULT_TOPIC_PATTERN='fleet/{project_slug}/devices/{device_serial}/#'",
    ]
    assert "aaaabbbbcccc1111" not in done.stdout + done.stderr


def test_cargo_lambda_needs_a_role(checkout: Path) -> None:
    done = make(checkout, "-o", "lambda-build", "deploy-cargo-lambda")
    assert done.returncode != 0 and "set LAMBDA_ROLE_ARN" in done.stderr
