"""`make deploy ARCH=...` refuses to deploy a build of one architecture with samconfig.toml's
Architecture parameter set to the other (an arm64 binary does not run on x86_64, nor the reverse).

    python3 infra/samconfig_architecture.py ARCH [SAMCONFIG]

samconfig.toml's parameter_overrides is a list of Name=Value strings as this repository writes
it, or one string of Name="Value" pairs as `sam deploy --guided` rewrites it: both are read.
"""

from __future__ import annotations

import shlex
import sys
import tomllib
from pathlib import Path


def deployed_architecture(samconfig: Path) -> str | None:
    config = tomllib.loads(samconfig.read_text())
    overrides = (config.get("default", {}).get("deploy", {}).get("parameters", {})
                 .get("parameter_overrides", []))
    pairs = overrides if isinstance(overrides, list) else shlex.split(overrides)
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name == "Architecture":
            return value
    return None


def main(argv: list[str]) -> int:
    architecture = argv[0]
    samconfig = Path(argv[1] if len(argv) > 1 else "samconfig.toml")
    found = deployed_architecture(samconfig)
    if found == architecture:
        return 0
    print(f"{samconfig} deploys Architecture={found or '(the template default, arm64)'}, not "
          f"{architecture}: set \"Architecture={architecture}\" in parameter_overrides of "
          "[default.deploy.parameters], or build with that ARCH", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
