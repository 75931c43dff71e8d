"""The release tooling: the version check, the packaged template, the checks on a release
binary and its zip (the smoke test's: test_smoke.py)."""

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

INFRA = Path(__file__).resolve().parents[2] / "infra"
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


# --- the guided deploy's answer for "no project key" ------------------------------------------

def test_a_dash_for_the_project_key_means_the_key_comes_from_the_topic(raw) -> None:
    variables = Rendered(raw, MemfaultProjectKey="-").function()["Properties"]["Environment"][
        "Variables"]
    assert "MEMFAULT_PROJECT_KEY" not in variables


def test_a_dash_for_the_slug_map_means_no_map(raw) -> None:
    variables = Rendered(raw, ProjectKeys="-").function()["Properties"]["Environment"]["Variables"]
    assert "MEMFAULT_PROJECT_KEYS" not in variables
    assert re.fullmatch(raw["Parameters"]["ProjectKeys"]["AllowedPattern"], "-")
