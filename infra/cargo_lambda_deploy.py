"""`make deploy-cargo-lambda`: `cargo lambda deploy` of target/lambda/ARCH with every MEMFAULT_...
variable of the environment as the function's configuration.

    ARCH=arm64 LAMBDA_ROLE_ARN=arn:... STACK=... MEMFAULT_...=... python3 infra/cargo_lambda_deploy.py
    (cargo with cargo-lambda on PATH: the Makefile runs it with uv run)

Every variable the function reads (src/config.rs) that is set, and only those: an unset one takes
the function's own default, so a layout's settings (MEMFAULT_TOPIC_PATTERN, MEMFAULT_PROJECT_KEY or
MEMFAULT_PROJECT_KEYS) reach the function as given. They go in an env file, not as --env-var:
cargo-lambda splits an --env-var value at commas, which would cut MEMFAULT_PROJECT_KEYS
(slug=key,slug=key) into pieces. The file is single-quoted dotenv (a pattern may end in '#', which
starts a comment in an unquoted value) and removed afterwards.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from sam_deploy import NOT_KEYS
from project_key import shorten

REPO = Path(__file__).resolve().parents[1]
SECRET = {"MEMFAULT_PROJECT_KEY", "MEMFAULT_PROJECT_KEYS"}


def settings(environ: dict[str, str]) -> dict[str, str]:
    found = {name: value for name, value in sorted(environ.items())
             if re.fullmatch(r"MEMFAULT_[A-Z0-9_]+", name) and value != ""}
    for name, value in found.items():
        if "'" in value or "\n" in value:
            raise SystemExit(f"make deploy-cargo-lambda: {name} holds a quote or a line break, "
                             "which no setting of the function takes")
    return found


def main() -> int:
    role = os.environ.get("LAMBDA_ROLE_ARN", "")
    if not role:
        print("make deploy-cargo-lambda: set LAMBDA_ROLE_ARN to the function's execution role "
              "(docs/deploy.md, Deploy with cargo lambda)", file=sys.stderr)
        return 1
    arch = os.environ.get("ARCH") or "arm64"
    found = settings(dict(os.environ))
    shown = ", ".join(f"{name}={shorten(value, NOT_KEYS) if name in SECRET else value}"
                      for name, value in found.items()) or "none: the function's defaults"
    print(f"==> The function's settings: {shown}", flush=True)
    with tempfile.NamedTemporaryFile("w", suffix=".env", prefix="memfault-chunk-proxy-") as env_file:
        env_file.write("".join(f"{name}='{value}'\n" for name, value in found.items()))
        env_file.flush()
        words = ["cargo", "lambda", "deploy", "--lambda-dir", f"target/lambda/{arch}",
                 "--iam-role", role, "--env-file", env_file.name, "--memory", "128",
                 "--timeout", "30", "--tag", f"project={os.environ.get('STACK') or 'memfault-chunk-proxy'}",
                 "memfault-chunk-proxy"]
        print(f"$ {shlex.join(words)}", flush=True)
        return subprocess.run(words, cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
