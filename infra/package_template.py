"""The packaged template of a release: template.yaml with the function's code taken from a zip in
an S3 bucket instead of built from this repository, so that `aws cloudformation deploy` of this
one file (plus the release zip in the user's bucket) deploys the stack with no Rust, zig or SAM
CLI. Written by `make dist` from template.yaml, never edited by hand.

    python infra/package_template.py OUT.json --version 1.2.3
        adds the parameters CodeBucket (required) and CodeKey (default: the release zip of the
        chosen Architecture, memfault-chunk-proxy-1.2.3-<Architecture>.zip);
    python infra/package_template.py OUT.json --version 1.2.3 --code-uri s3://B/K --architecture arm64
        code at a fixed S3 location, for one architecture only (what the Serverless Application
        Repository needs: it copies the code the template names, and cannot follow a parameter).

The output is JSON: CloudFormation reads it like YAML, and it needs no CloudFormation-aware YAML
writer for the intrinsic functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from render_template import load

FUNCTION = "ProxyFunction"
ZIP_NAME = "memfault-chunk-proxy-{version}-{architecture}.zip"


def function_of(template: dict[str, Any]) -> dict[str, Any]:
    function = template["Resources"][FUNCTION]
    assert function["Type"] == "AWS::Serverless::Function", function["Type"]
    return function


def package(template: dict[str, Any], version: str, code_uri: str | None = None,
            architecture: str | None = None) -> dict[str, Any]:
    function = function_of(template)
    # How `sam build` builds the code; the packaged template has no code to build.
    for key in ("BuildMethod", "BuildProperties"):
        function.get("Metadata", {}).pop(key, None)
    parameters = template["Parameters"]
    if architecture is not None:
        if architecture not in parameters["Architecture"]["AllowedValues"]:
            raise SystemExit(f"unknown architecture {architecture!r}")
        parameters["Architecture"]["Default"] = architecture
        parameters["Architecture"]["AllowedValues"] = [architecture]
    if code_uri is not None:
        function["Properties"]["CodeUri"] = code_uri
    else:
        parameters["CodeBucket"] = {
            "Type": "String",
            "MinLength": 3,
            "Description": "S3 bucket, in the stack's region, that holds the release zip "
                           "(docs/deploy.md: Deploy a release).",
        }
        parameters["CodeKey"] = {
            "Type": "String",
            "Default": "",
            "Description": "S3 key of the release zip; empty: "
                           + ZIP_NAME.format(version=version, architecture="<Architecture>")
                           + ". Its architecture must be Architecture's.",
        }
        # The console shows these first, as the one thing a release deploy adds to a first deploy.
        interface = template["Metadata"]["AWS::CloudFormation::Interface"]
        interface["ParameterGroups"].insert(0, {
            "Label": {"default": "Release code: the bucket that holds the release zip"},
            "Parameters": ["CodeBucket", "CodeKey"]})
        interface["ParameterLabels"]["CodeBucket"] = {"default": "Bucket of the release zip"}
        interface["ParameterLabels"]["CodeKey"] = {"default": "Key of the release zip (empty: its file name)"}
        template.setdefault("Conditions", {})["HasCodeKey"] = {
            "Fn::Not": [{"Fn::Equals": [{"Ref": "CodeKey"}, ""]}]}
        function["Properties"]["CodeUri"] = {
            "Bucket": {"Ref": "CodeBucket"},
            "Key": {"Fn::If": ["HasCodeKey", {"Ref": "CodeKey"}, {
                "Fn::Sub": ZIP_NAME.format(version=version, architecture="${Architecture}")}]},
        }
    template["Description"] = f"{template['Description']} Release {version}."
    return template


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--version", required=True)
    parser.add_argument("--code-uri", help="s3://bucket/key of the code, instead of parameters")
    parser.add_argument("--architecture", help="the only Architecture the template allows")
    args = parser.parse_args(argv)
    if args.code_uri is not None and args.architecture is None:
        parser.error("--code-uri holds one architecture's code: give --architecture too")
    template = package(load(), args.version, args.code_uri, args.architecture)
    args.output.write_text(json.dumps(template, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
