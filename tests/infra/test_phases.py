"""`make test` skips a phase that passed only while its inputs are as they were: each kind of input
changed on its own (a tracked file, a new file, a deleted file, the lock, the toolchain) makes the
phase run again. make runs the real Makefile in a git repository holding what the `versions` phase
reads, with stand-ins for uv and rustc whose versions the test sets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAND_IN = '#!/bin/sh\n[ "$1" = sync ] && exit 0\necho "$(basename "$0") $(cat "$VERSIONS/$(basename "$0")")"\n'


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    (work / "infra").mkdir(parents=True)
    for name in (".gitignore", "Makefile", "Cargo.toml", "CHANGELOG.md", "template.yaml", "uv.lock",
                 "infra/versions.py", "infra/phases.sh"):
        shutil.copy2(REPO / name, work / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("uv", "rustc"):
        (bin_dir / tool).write_text(STAND_IN)
        (bin_dir / tool).chmod(0o755)
        (tmp_path / tool).write_text("1.0\n")
    (work / "notes.txt").write_text("a tracked file\n")
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["git", "add", "."], cwd=work, check=True)
    return work


def versions_phase(work: Path, **variables: str) -> str:
    """What `make test PHASES=versions` did with the phase: "ok" (it ran) or "skipped"."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("MAKE") and name not in ("CI", "RERUN")}
    env.update(variables, PATH=f"{work.parent / 'bin'}:{env['PATH']}", VERSIONS=str(work.parent))
    done = subprocess.run(["make", "--no-print-directory", "test", "PHASES=versions",
                           f"UV={work.parent / 'bin' / 'uv'}"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("versions "))
    return "skipped" if "skipped" in row else row.split()[-1]


@pytest.mark.parametrize("change", ["tracked file", "new file", "deleted file", "lock", "uv", "rustc"])
def test_a_changed_input_runs_the_phase_again(checkout: Path, change: str) -> None:
    assert versions_phase(checkout) == "ok"
    assert versions_phase(checkout) == "skipped"
    if change == "tracked file":
        (checkout / "CHANGELOG.md").write_text((checkout / "CHANGELOG.md").read_text() + "\n")
    elif change == "new file":
        (checkout / "scratch.txt").write_text("a file git does not track yet\n")
    elif change == "deleted file":
        (checkout / "notes.txt").unlink()
    elif change == "lock":
        (checkout / "uv.lock").write_text((checkout / "uv.lock").read_text() + "\n")
    else:
        (checkout.parent / change).write_text("1.1\n")
    assert versions_phase(checkout) == "ok"
    assert versions_phase(checkout) == "skipped"


@pytest.mark.parametrize("variables", [{"CI": "true"}, {"RERUN": "1"}])
def test_ci_and_rerun_run_every_phase(checkout: Path, variables: dict[str, str]) -> None:
    assert versions_phase(checkout) == "ok"
    assert versions_phase(checkout, **variables) == "ok"
