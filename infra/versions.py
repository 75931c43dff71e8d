"""The version of a release is one number in three places: Cargo.toml's package version, the
template's Serverless Application Repository SemanticVersion, and the newest released heading of
CHANGELOG.md. Prints it when they agree; fails naming each place when they do not.

    python3 infra/versions.py            (make versions, part of make lint)
    python3 infra/versions.py --tag v1.2.3   (the release workflow: the tag must name it too)

Standard library only (Python 3.11's tomllib), so that it runs before any venv exists. The
template is read with a pattern rather than a YAML parser: its CloudFormation tags (!Ref ...) need
a loader the standard library lacks, and the key occurs once, at a known depth.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEMANTIC_VERSION = re.compile(r"^    SemanticVersion:\s*[\"']?([^\"'\s#]+)", re.MULTILINE)
RELEASE_HEADING = re.compile(r"^## \[(\d[^\]]*)\]", re.MULTILINE)


def versions(repo: Path = REPO) -> dict[str, str | None]:
    cargo = tomllib.loads((repo / "Cargo.toml").read_text())["package"]["version"]
    template = SEMANTIC_VERSION.findall((repo / "template.yaml").read_text())
    changelog = RELEASE_HEADING.search((repo / "CHANGELOG.md").read_text())
    return {
        "Cargo.toml [package] version": cargo,
        "template.yaml Metadata AWS::ServerlessRepo::Application SemanticVersion":
            template[0] if len(template) == 1 else None,
        "CHANGELOG.md newest release heading (## [x.y.z])": changelog and changelog.group(1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="a release tag, v<version>, that must name the version too")
    args = parser.parse_args()
    found = versions()
    if args.tag is not None:
        found["the release tag (v<version>)"] = args.tag.removeprefix("v")
    if None not in found.values() and len(set(found.values())) == 1:
        print(f"version {next(iter(found.values()))}: " + ", ".join(found))
        return 0
    print("The version must be the same everywhere; found:", file=sys.stderr)
    for place, version in found.items():
        print(f"  {place}: {version or 'missing'}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
