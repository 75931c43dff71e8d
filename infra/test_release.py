"""The release tooling: the version check, the packaged template, the checks on a release
binary and its zip, and the smoke test's decisions (with a stand-in for the AWS CLI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from samtranslator.translator.transform import transform

import dist
import versions
from package_template import package
from render_template import _NoManagedPolicies, load
from template_model import Rendered

INFRA = Path(__file__).resolve().parent
REPO = INFRA.parent


# --- one version everywhere -------------------------------------------------------------------

def copy_for_versions(tmp_path: Path) -> Path:
    for name in ("Cargo.toml", "template.yaml", "CHANGELOG.md"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def test_the_repository_names_one_version() -> None:
    found = versions.versions()
    assert None not in found.values() and len(set(found.values())) == 1, found


@pytest.mark.parametrize("name, old, new", [
    ("Cargo.toml", '\nversion = "{v}"', '\nversion = "9.9.9"'),
    ("template.yaml", "SemanticVersion: {v}", "SemanticVersion: 9.9.9"),
    ("CHANGELOG.md", "## [{v}]", "## [9.9.9]"),
])
def test_a_version_that_disagrees_is_found(tmp_path: Path, name: str, old: str, new: str) -> None:
    repo = copy_for_versions(tmp_path)
    current = versions.versions()["Cargo.toml [package] version"]
    text = (repo / name).read_text()
    assert old.format(v=current) in text
    (repo / name).write_text(text.replace(old.format(v=current), new, 1))
    found = versions.versions(repo)
    assert len(set(found.values())) == 2, found


# --- the packaged template --------------------------------------------------------------------

def transformed(template: dict, **parameters: str) -> dict:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    values = {name: str(spec["Default"]) for name, spec in template["Parameters"].items()
              if "Default" in spec}
    values.update(parameters)
    return transform(json.loads(json.dumps(template)), values, _NoManagedPolicies())


def test_the_packaged_template_takes_its_code_from_the_bucket_parameters() -> None:
    packaged = package(load(), "1.2.3")
    function = packaged["Resources"]["ProxyFunction"]
    assert "BuildMethod" not in function["Metadata"]
    assert packaged["Parameters"]["CodeBucket"]["Type"] == "String"
    assert "Default" not in packaged["Parameters"]["CodeBucket"]  # the user's bucket, required
    code = transformed(packaged, CodeBucket="my-bucket")["Resources"]["ProxyFunction"][
        "Properties"]["Code"]
    assert code == {
        "S3Bucket": {"Ref": "CodeBucket"},
        "S3Key": {"Fn::If": ["HasCodeKey", {"Ref": "CodeKey"}, {
            "Fn::Sub": "memfault-chunk-proxy-1.2.3-${Architecture}.zip"}]},
    }
    # Everything else is template.yaml's: the packaged template is generated, not a copy.
    source = load()
    assert set(packaged["Resources"]) == set(source["Resources"])
    assert set(packaged["Parameters"]) == set(source["Parameters"]) | {"CodeBucket", "CodeKey"}
    # The code's parameters are asked first, labelled; every other group is template.yaml's.
    interface = packaged["Metadata"]["AWS::CloudFormation::Interface"]
    groups = interface["ParameterGroups"]
    assert groups[0]["Parameters"] == ["CodeBucket", "CodeKey"]
    assert groups[1:] == source["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert sorted(p for g in groups for p in g["Parameters"]) == sorted(packaged["Parameters"])
    assert set(interface["ParameterLabels"]) == set(packaged["Parameters"])


def test_the_sar_template_names_one_architecture_and_its_zip() -> None:
    uri = "s3://releases/memfault-chunk-proxy/1.2.3/memfault-chunk-proxy-1.2.3-arm64.zip"
    packaged = package(load(), "1.2.3", code_uri=uri, architecture="arm64")
    assert packaged["Parameters"]["Architecture"]["AllowedValues"] == ["arm64"]
    assert "CodeBucket" not in packaged["Parameters"]
    groups = packaged["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert sorted(p for g in groups for p in g["Parameters"]) == sorted(packaged["Parameters"])
    code = transformed(packaged)["Resources"]["ProxyFunction"]["Properties"]["Code"]
    assert code == {"S3Bucket": "releases",
                    "S3Key": "memfault-chunk-proxy/1.2.3/memfault-chunk-proxy-1.2.3-arm64.zip"}


# --- release binaries -------------------------------------------------------------------------

HOST_ARCH = {"x86_64": "x86_64", "aarch64": "arm64"}.get(os.uname().machine)
needs_host_arch = pytest.mark.skipif(HOST_ARCH is None, reason="an ELF host of arm64 or x86_64")
# Any dynamically linked binary of this machine stands in for a bootstrap: the checks read ELF
# headers, not what the program does.
HOST_BINARY = Path(sys.executable).resolve()


@needs_host_arch
def test_a_binary_of_the_other_architecture_is_refused() -> None:
    other = "arm64" if HOST_ARCH == "x86_64" else "x86_64"
    dist.check(HOST_ARCH, HOST_BINARY, floor=(99,))
    with pytest.raises(dist.Refused, match=f"not {other}"):
        dist.check(other, HOST_BINARY, floor=(99,))


@needs_host_arch
def test_a_binary_that_needs_a_newer_glibc_is_refused() -> None:
    needed = dist.glibc_needed(HOST_BINARY)
    assert needed > (2, 0), needed
    dist.check(HOST_ARCH, HOST_BINARY, floor=needed)
    older = (needed[0], needed[1] - 1)
    with pytest.raises(dist.Refused, match="newer than Lambda's"):
        dist.check(HOST_ARCH, HOST_BINARY, floor=older)


def test_not_an_elf_binary_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "bootstrap"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(dist.Refused, match="not an ELF binary"):
        dist.check("x86_64", script)


def test_the_zip_holds_bootstrap_executable_and_is_reproducible(tmp_path: Path) -> None:
    binary = tmp_path / "built"
    binary.write_bytes(b"\x7fELF stand-in")
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    dist.write_zip(binary, first)
    dist.write_zip(binary, second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        (entry,) = archive.infolist()
        assert entry.filename == "bootstrap"
        assert stat.S_IMODE(entry.external_attr >> 16) == 0o755
        assert stat.S_ISREG(entry.external_attr >> 16)
        assert archive.read("bootstrap") == b"\x7fELF stand-in"
    sums = dist.sha256sums([first])
    assert sums.endswith("  a.zip\n") and len(sums.split()[0]) == 64


# --- make smoke -------------------------------------------------------------------------------

SMOKE = INFRA / "smoke.py"
KEY = "abcdefgh12345678"


def stack_answer(tmp_path: Path, **parameters: str) -> Path:
    path = tmp_path / "stack.json"
    path.write_text(json.dumps({"Stacks": [{
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Outputs": [{"OutputKey": "LogGroupName", "OutputValue": "/aws/lambda/edge"}],
    }]}))
    return path


def run_smoke(tmp_path: Path, dry_run: bool, stack_json: Path | None = None,
              path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEMFAULT_PROJECT_KEY": KEY, "SMOKE_SERIAL": "smoke-1",
           "SMOKE_TIMEOUT": "0", "DRY_RUN": "1" if dry_run else ""}
    if stack_json:
        env["SMOKE_STACK_JSON"] = str(stack_json)
    if path:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run([sys.executable, str(SMOKE), "edge"], capture_output=True, text=True,
                          env=env, timeout=60)


def test_smoke_dry_run_prints_the_commands_and_shortens_the_key(tmp_path: Path) -> None:
    done = run_smoke(tmp_path, dry_run=True)
    assert done.returncode == 0, done.stdout + done.stderr
    commands = [line for line in done.stdout.splitlines() if line.startswith("$ ")]
    assert [c.split()[1:3] for c in commands] == [
        ["aws", "cloudformation"], ["aws", "iot"], ["aws", "iot-data"], ["aws", "logs"]]
    assert "--topic prod/smoke/smoke-1/memfault/abcd…/chunk" in commands[2]
    assert KEY not in done.stdout
    assert "--log-group-name /aws/lambda/edge" in commands[3]


def test_smoke_publishes_through_basic_ingest_when_the_stack_uses_it(tmp_path: Path) -> None:
    answer = stack_answer(tmp_path, BasicIngest="true", TopicRuleName="fleet_rule")
    done = run_smoke(tmp_path, dry_run=True, stack_json=answer)
    assert "--topic '$aws/rules/fleet_rule/prod/smoke/smoke-1/memfault/abcd…/chunk'" in done.stdout


def test_smoke_asks_for_debug_logs_in_batch_modes(tmp_path: Path) -> None:
    done = run_smoke(tmp_path, dry_run=True, stack_json=stack_answer(tmp_path, Mode="Stream"))
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "LogLevel=DEBUG" in done.stdout


def fake_aws(tmp_path: Path, log_lines: list[dict]) -> str:
    """An `aws` that answers describe-endpoint, publish and filter-log-events."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    messages = json.dumps([json.dumps(line) for line in log_lines])
    script = bin_dir / "aws"
    script.write_text(f"""#!/bin/sh
case "$1 $2" in
  "iot describe-endpoint") echo example-ats.iot.us-east-1.amazonaws.com ;;
  "iot-data publish") echo "$@" > "{tmp_path}/published" ;;
  "logs filter-log-events") echo '{messages}' ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
""")
    script.chmod(0o755)
    return str(bin_dir)


def test_smoke_passes_on_memfaults_202(tmp_path: Path) -> None:
    aws = fake_aws(tmp_path, [{"outcome": "delivered", "device_serial": "smoke-1", "status": 202}])
    done = run_smoke(tmp_path, dry_run=False, stack_json=stack_answer(tmp_path), path=aws)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout
    assert "prod/smoke/smoke-1/memfault/abcdefgh12345678/chunk" in (tmp_path / "published").read_text()


def test_smoke_fails_on_a_refusal_and_on_silence(tmp_path: Path) -> None:
    refused = fake_aws(tmp_path, [{"outcome": "refused", "device_serial": "smoke-1",
                                   "error_type": "Permanent.TopicMismatch"}])
    done = run_smoke(tmp_path, dry_run=False, stack_json=stack_answer(tmp_path), path=refused)
    assert done.returncode == 1 and "FAIL" in done.stdout and "TopicMismatch" in done.stdout

    shutil.rmtree(tmp_path / "bin")
    silent = fake_aws(tmp_path, [{"outcome": "delivered", "device_serial": "other", "status": 202}])
    done = run_smoke(tmp_path, dry_run=False, stack_json=stack_answer(tmp_path), path=silent)
    assert done.returncode == 1 and "no log line" in done.stdout


# --- the guided deploy's answer for "no project key" ------------------------------------------

def test_a_dash_for_the_project_key_means_the_key_comes_from_the_topic(raw) -> None:
    variables = Rendered(raw, MemfaultProjectKey="-").function()["Properties"]["Environment"][
        "Variables"]
    assert "MEMFAULT_PROJECT_KEY" not in variables


def test_a_dash_for_the_slug_map_means_no_map(raw) -> None:
    variables = Rendered(raw, ProjectKeys="-").function()["Properties"]["Environment"]["Variables"]
    assert "MEMFAULT_PROJECT_KEYS" not in variables
    assert re.fullmatch(raw["Parameters"]["ProjectKeys"]["AllowedPattern"], "-")
