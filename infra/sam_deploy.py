"""`make deploy` and `make deploy-guided`: `sam deploy` of the build in .aws-sam/build-ARCH, with
the repository's samconfig.toml, one of its environments, and parameters given on the command
line merged over the environment's saved ones.

    ARCH=arm64 CONFIG_ENV=default PARAMS="Name=Value ..." [STACK=name] python3 infra/sam_deploy.py deploy|guided
    (the SAM CLI on PATH: the Makefile runs it with uv run)

Why not plain `sam deploy --parameter-overrides ...`: SAM takes the command line's list *instead
of* samconfig.toml's, not on top of it. For a stack that exists the parameters left out keep their
deployed values (SAM passes UsePreviousValue), but a first deploy of an environment would lose
the environment's saved answers. So the list given to SAM is: the environment's saved
parameter_overrides, then PARAMS (a name given twice takes the later value), then
Architecture=ARCH, because the binary in the build is of ARCH whatever the stack had before.
STACK (`make deploy STACK=...`; the Makefile passes it only when it is given) names the stack
instead of the environment's stack_name, with the environment's other settings.

Refused before SAM runs (nothing is built into a stack that cannot run it): an environment that
saves another Architecture than ARCH, PARAMS with another Architecture, a PARAMS word that is not
Name=Value, and for `deploy` an environment that samconfig.toml does not have (`deploy-guided`
creates one). The command is printed with the values of the template's NoEcho parameters (the
project keys) shortened.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tomllib
from pathlib import Path

from project_key import shorten

REPO = Path(__file__).resolve().parents[1]
SAMCONFIG = REPO / "samconfig.toml"
TEMPLATE = REPO / "template.yaml"
# Values of a NoEcho parameter that are no key, shown as they are: empty, and "-" (none).
NOT_KEYS = ("", "-")


class Refused(Exception):
    pass


def saved_overrides(samconfig: Path, config_env: str) -> dict[str, str] | None:
    """The environment's `deploy` parameter_overrides (None: no such environment). The list is
    Name=Value strings as this repository writes it, or one string of Name="Value" pairs as
    `sam deploy --guided` rewrites it: both are read."""
    config = tomllib.loads(samconfig.read_text())
    if not isinstance(config.get(config_env), dict):
        return None
    section = config[config_env]
    overrides = section.get("deploy", {}).get("parameters", {}).get("parameter_overrides", [])
    pairs = overrides if isinstance(overrides, list) else shlex.split(overrides)
    return parse_pairs(pairs, f"{samconfig.name} [{config_env}.deploy.parameters]")


def parse_pairs(words: list[str], source: str, names: str = r"[A-Za-z0-9]+") -> dict[str, str]:
    pairs: dict[str, str] = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not re.fullmatch(names, name):
            raise Refused(f"{source}: {word!r} is not Name=Value (a template parameter, '=', its "
                          "value; quote a value with spaces: PARAMS='Name=\"a b\"')")
        pairs[name] = value
    return pairs


def deployed_architecture(samconfig: Path, config_env: str = "default") -> str | None:
    return (saved_overrides(samconfig, config_env) or {}).get("Architecture")


def secret_parameters(template: Path) -> set[str]:
    """The template's NoEcho parameters, from its text: a parameter's name at two spaces under
    `Parameters:`, NoEcho at four (the layout cfn-lint and the template tests keep)."""
    secret, current, in_parameters = set(), None, False
    for line in template.read_text().splitlines():
        if re.fullmatch(r"\S.*:\s*", line):
            in_parameters = line.strip() == "Parameters:"
        elif in_parameters and (match := re.fullmatch(r"  ([A-Za-z0-9]+):\s*", line)):
            current = match.group(1)
        elif in_parameters and current and re.fullmatch(r"    NoEcho:\s*(true|'true'|\"true\")\s*",
                                                        line, re.IGNORECASE):
            secret.add(current)
    return secret


def merged(saved: dict[str, str], params: dict[str, str], arch: str, config_env: str) -> dict[str, str]:
    if saved.get("Architecture", arch) != arch and "Architecture" not in params:
        raise Refused(f"samconfig.toml [{config_env}] deploys Architecture={saved['Architecture']}, "
                      f"not {arch}: build with ARCH={saved['Architecture']}, or set "
                      f"\"Architecture={arch}\" in parameter_overrides of "
                      f"[{config_env}.deploy.parameters]")
    if params.get("Architecture", arch) != arch:
        raise Refused(f"PARAMS says Architecture={params['Architecture']} and the build is "
                      f"ARCH={arch}: an {arch} binary does not run on the other; give ARCH instead")
    return {**saved, **params, "Architecture": arch}


def command(action: str, arch: str, config_env: str, overrides: dict[str, str],
            stack: str = "") -> list[str]:
    words = ["sam", "deploy"] + (["--guided"] if action == "guided" else [])
    words += ["--config-file", str(SAMCONFIG), "--config-env", config_env,
              "--template-file", f".aws-sam/build-{arch}/template.yaml"]
    words += ["--stack-name", stack] if stack else []
    words += ["--parameter-overrides"]
    return words + [override(name, value) for name, value in overrides.items()]


def override(name: str, value: str) -> str:
    """One --parameter-overrides word. The SAM CLI reads `Name=` (empty) and a value with a space
    only quoted, as its guided run saves them: Name="Value"."""
    if value and not re.search(r"[\s\"']", value):
        return f"{name}={value}"
    quote = "'" if '"' in value else '"'
    if quote in value:
        raise Refused(f"{name}: a value with both quote characters cannot be passed to SAM")
    return f"{name}={quote}{value}{quote}"


def shown(words: list[str], secret: set[str]) -> str:
    def hide(word: str) -> str:
        name, equals, value = word.partition("=")
        return f"{name}={shorten(value.strip(chr(34) + chr(39)), NOT_KEYS)}" if equals and name in secret else word
    return shlex.join(hide(word) for word in words)


def main(argv: list[str]) -> int:
    if argv not in (["deploy"], ["guided"]):
        print("usage: python3 infra/sam_deploy.py deploy|guided   (make deploy, make deploy-guided)",
              file=sys.stderr)
        return 2
    action = argv[0]
    arch = os.environ.get("ARCH") or "arm64"
    config_env = os.environ.get("CONFIG_ENV") or "default"
    try:
        params = parse_pairs(shlex.split(os.environ.get("PARAMS", "")), "PARAMS")
        saved = saved_overrides(SAMCONFIG, config_env)
        if saved is None and action == "deploy":
            known = ", ".join(name for name, section in tomllib.loads(SAMCONFIG.read_text()).items()
                              if isinstance(section, dict))
            raise Refused(f"samconfig.toml has no environment {config_env!r} (it has: {known}): "
                          f"`make deploy-guided CONFIG_ENV={config_env}` creates it")
        stack = os.environ.get("STACK", "")
        if stack and not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", stack):
            raise Refused(f"STACK={stack!r} is no CloudFormation stack name (a letter, then "
                          "letters, digits and hyphens, at most 128)")
        words = command(action, arch, config_env, merged(saved or {}, params, arch, config_env),
                        stack)
    except Refused as refusal:
        print(f"make {'deploy' if action == 'deploy' else 'deploy-guided'}: {refusal}",
              file=sys.stderr)
        return 1
    print(f"$ {shown(words, secret_parameters(TEMPLATE))}", flush=True)
    os.chdir(REPO)
    os.execvp(words[0], words)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
