"""Write variants of template.yaml as JSON, for the tools that cannot be given parameters.

checkov evaluates a template's Conditions with the parameters' defaults, so it only scans the
resources of the default configuration, and cfn-lint 1.58 drops --parameters on a template with
the SAM transform. This writes copies whose defaults are overridden (VARIANTS below), each as
written (.sam.json) or run through the SAM transform the way CloudFormation runs it at deploy time
(.cfn.json: offline, samtranslator, with CodeUri replaced by an S3 location as `sam package`
does), and the release's packaged templates (infra/package_template.py), for `make validate`:

    python infra/render_template.py OUT_DIR

One process writes them all: it reads the template and imports samtranslator once.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml


TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
PACKAGED_CODE_URI = "s3://example-artifacts-bucket/memfault-chunk-proxy.zip"


class _NoManagedPolicies:
    """The template attaches no managed policies, so none need to be looked up."""

    def load(self) -> dict[str, str]:
        return {}


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    # Round-trip through JSON to turn cfn-lint's node classes into plain dicts/lists.
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def override_defaults(template: dict[str, Any], overrides: dict[str, str]) -> None:
    parameters = template["Parameters"]
    for name, value in overrides.items():
        if name not in parameters:
            raise SystemExit(f"unknown parameter {name!r}")
        allowed = parameters[name].get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            raise SystemExit(f"{name}={value!r} is not one of {allowed}")
        parameters[name]["Default"] = value


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    # Its metrics publisher warns at exit that nothing published them: nothing is meant to.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)

    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = PACKAGED_CODE_URI
    parameter_values = {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
    # passthrough_metadata keeps each SAM resource's Metadata (and so its checkov
    # skips, with their reasons) on the resources it expands to.
    return transform(template, parameter_values, _NoManagedPolicies(), passthrough_metadata=True)


# Parameter sets beyond the defaults (Direct mode, topic rule, no device policy): name, whether
# to write it as written and/or transformed, and the overrides. The edges of the template's Rules
# are each just on the side that works (tests/infra/test_template.py checks that one step further is
# refused): the least record age, the longest (the stream's retention), the largest SQS batch
# without a batching window, and no metrics with the alarms off.
VARIANTS: list[tuple[str, tuple[str, ...], dict[str, str]]] = [
    ("direct", ("cfn",), {}),
    ("queued", ("sam", "cfn"), {"Mode": "Queued", "DeviceSerialFromClientId": "true",
                                "CreateDevicePolicy": "true", "ReplayFailedChunks": "true",
                                "MemfaultProjectKey": "example-project-key"}),
    ("own-rule", ("cfn",), {"CreateTopicRule": "false", "Mode": "Queued"}),
    ("stream", ("sam", "cfn"), {"Mode": "Stream"}),
    ("stream-provisioned", ("sam", "cfn"), {
        "Mode": "Stream", "StreamShardCount": "2", "DeviceSerialFromClientId": "true",
        "BasicIngest": "true", "CreateDevicePolicy": "true", "ReplayFailedChunks": "true",
        "AlarmEmail": "on-call@example.com"}),
    ("own-rule-stream", ("cfn",), {"CreateTopicRule": "false", "Mode": "Stream", "BasicIngest": "true"}),
    ("existing-topic", ("cfn",), {"Mode": "Queued",
                                  "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:on-call"}),
    ("no-monitoring", ("cfn",), {"CreateAlarms": "false", "CreateDashboard": "false",
                                 "MetricsNamespace": ""}),
    ("guide", ("sam", "cfn"), {
        "TopicLayout": "MemfaultGuide", "ProjectKeys": "project-a=example-key-a,project-b=example-key-b",
        "Mode": "Stream", "BasicIngest": "true", "CreateDevicePolicy": "true",
        "DeviceSerialFromClientId": "true"}),
    ("custom-layout", ("cfn",), {
        "TopicLayout": "Custom", "TopicPattern": "fleet/{project_slug}/devices/{device_serial}/#",
        "ProjectKeys": "project-a=example-key-a", "Mode": "Stream", "CreateDevicePolicy": "true"}),
    ("stream-record-age-edges", ("cfn",), {"Mode": "Stream", "StreamMaxRecordAgeSeconds": "60"}),
    ("stream-record-age-retention", ("cfn",), {"Mode": "Stream", "StreamMaxRecordAgeSeconds": "86400",
                                               "StreamShardCount": "1"}),
    ("queued-no-window", ("cfn",), {"Mode": "Queued", "SqsBatchSize": "10",
                                    "SqsMaxBatchingWindowSeconds": "0"}),
]


def render(template: dict[str, Any], out: Path, forms: tuple[str, ...], overrides: dict[str, str]) -> int:
    """Writes one variant of the template (left unchanged) in each of its forms."""
    template = copy.deepcopy(template)
    override_defaults(template, overrides)
    if "sam" in forms:
        (out.parent / f"{out.name}.sam.json").write_text(json.dumps(template, indent=2) + "\n")
    if "cfn" in forms:
        from samtranslator.model.exceptions import InvalidDocumentException

        try:
            transformed = sam_transform(template)
        except InvalidDocumentException as error:
            for cause in error.causes:
                print(f"SAM transform of {out.name}: {cause.message}", file=sys.stderr)
            return 1
        (out.parent / f"{out.name}.cfn.json").write_text(json.dumps(transformed, indent=2) + "\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    out_dir = parser.parse_args(argv).out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        stale.unlink()
    from package_template import package  # it imports load() from here

    template = load()
    # The release's packaged templates: code from bucket/key parameters, and the Serverless
    # Application Repository's, with code at a fixed location.
    for name, packaged in (("release", package(copy.deepcopy(template), "0.0.0")),
                           ("sar", package(copy.deepcopy(template), "0.0.0", architecture="arm64",
                                           code_uri="s3://example-artifacts-bucket/memfault-chunk-proxy-0.0.0-arm64.zip"))):
        (out_dir / f"{name}.package.json").write_text(json.dumps(packaged, indent=1) + "\n")
    # Every variant is written, so that one failure does not hide another.
    failed = [render(template, out_dir / name, forms, overrides) for name, forms, overrides in VARIANTS]
    return 1 if any(failed) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
