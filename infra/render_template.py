"""Write variants of template.yaml as JSON, for tools that cannot be given parameters.

checkov evaluates a template's Conditions with the parameters' defaults, so it only
scans the resources of the default configuration. This writes copies whose defaults
are overridden (e.g. Mode=Queued), optionally run through the SAM transform the way
CloudFormation runs it at deploy time (offline: samtranslator, with CodeUri replaced
by an S3 location as `sam package` would do), so that the processed, plain
CloudFormation template can be linted and scanned too.

    python infra/render_template.py OUT.json [--sam-transform] [Name=Value ...] \
        [--next OUT.json [--sam-transform] [Name=Value ...]]...

Several variants, separated by --next, are written by one process, which reads the template
and imports samtranslator (most of a variant's time) once.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

from runs import split_runs

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


def render(template: dict[str, Any], argv: list[str]) -> int:
    """Writes one variant of the template (left unchanged) as argv (OUT.json ...) says."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--sam-transform", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="Name=Value")
    args = parser.parse_intermixed_args(argv)

    overrides = {}
    for item in args.overrides:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"expected Name=Value, got {item!r}")
        overrides[name] = value

    template = copy.deepcopy(template)
    override_defaults(template, overrides)
    if args.sam_transform:
        from samtranslator.model.exceptions import InvalidDocumentException

        try:
            template = sam_transform(template)
        except InvalidDocumentException as error:
            for cause in error.causes:
                print(f"SAM transform of {args.output.name}: {cause.message}", file=sys.stderr)
            return 1
    args.output.write_text(json.dumps(template, indent=2) + "\n")
    return 0


def main(argv: list[str]) -> int:
    variants = split_runs(argv)
    template = load()
    # Every variant is written, so that one failure does not hide another.
    failed = [render(template, variant) for variant in variants]
    return 1 if any(failed) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
