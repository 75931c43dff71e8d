"""`make deploy-path`: the documented deploy commands, run as a user runs them, up to the point
where CloudFormation would change the stack; fails where a user's run would fail.

From copies of the repository (so that a guided run's answers do not touch this one):
  1. The README's first deploy command, `make deploy-guided ...`, answering every question with
     Enter (the defaults) except the hidden ones, the project key and the slug map, given as "-"
     (none: the key comes from each topic; SAM asks for a NoEcho parameter until it gets a value).
     Then: SAM read and wrote the repository's samconfig.toml (not one in the build folder),
     uploaded the code, and asked CloudFormation for a change set of the stack with those
     parameters; the answer to "Deploy this changeset?" is the default, no.
  2. The README's next one, `make deploy ...`, in the same copy, as a user runs it afterwards:
     the same, non-interactive, with the answers saved by step 1.
  3. Every other `make deploy ...` and `make deploy-guided ...` line in a shell block of README.md
     and docs/*.md, as written (placeholders such as `<key of project-a>` replaced by made-up
     values that fit the parameter), each from a fresh copy: it must reach CloudFormation and
     leave a change set of the stack of its CONFIG_ENV carrying each PARAMS value and
     Architecture=ARCH, its printed command must not show a project key in full, and every PARAMS
     name must be a template parameter whose value the template allows.
  4. Recipe 2 of docs/recipes.md, attaching the function to a rule of the user's, for each mode:
     its files (a ```json block after `<!-- file NAME [MODE] -->`) written, its commands (the ```sh
     blocks after `<!-- run [MODE] -->`) run as written by the AWS CLI, placeholders replaced by
     what a stack of that mode has (a stand-in function, ingest queue or stream). Then the user's
     rule must hold its own action and the function's, the recipe's SQL and error action, and the
     role its policy; in Direct mode the function must let IoT invoke it for that rule.

AWS is moto server (PyPI, pinned in pyproject.toml) on loopback, through
AWS_ENDPOINT_URL, with made-up credentials: nothing leaves the machine. Two stand-ins, each for
what cannot run here quickly or at all:
  - the build: `make sam-build` is skipped (`make -o sam-build`, the release build takes
    minutes; it is covered by its own documentation and `make dist`). Its output is made with
    SAM's own post-build step (samcli's move_template, which rewrites the template's local paths
    for the build folder) around a stand-in `bootstrap`, once, then copied for each command;
    its template is written as JSON, not YAML (the same template; SAM reads either);
  - SAM's managed bucket stack, created beforehand from SAM's own template: moto runs a change
    set's resources but not its Outputs, which SAM reads to find the bucket.

    PYTHONPATH=infra uv run python tests/deploy_path.py   (or make deploy-path)
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from samcli.commands._utils.template import get_template_data, move_template, get_template_parameters
from samcli.lib.bootstrap.bootstrap import SAM_CLI_STACK_NAME, _get_stack_template

from sam_deploy import Refused, deployed_architecture, parse_pairs, secret_parameters
from support import Failed, moto_server

REPO = Path(__file__).resolve().parents[1]
ARCH = "arm64"  # the Makefile's default ARCH, as a user's first run has it
ARCHS = ("arm64", "x86_64")
FUNCTION = "ProxyFunction"
NO_KEY = "-"
RUN_TIMEOUT_S = 180
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RECIPES = REPO / "docs" / "recipes.md"
SHELL_BLOCK = re.compile(r"^```(?:sh|shell|bash|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
DEPLOY_LINE = re.compile(r"^make (deploy|deploy-guided)(\s|$)")
PLACEHOLDER = re.compile(r"<([^<>]+)>")
ARNS = {  # made-up ARNs for placeholders such as <IngestStreamArn>, <role ARN>
    "stream": "arn:aws:kinesis:us-east-1:123456789012:stream/example",
    "queue": "arn:aws:sqs:us-east-1:123456789012:example",
    "function": "arn:aws:lambda:us-east-1:123456789012:function:example",
    "role": "arn:aws:iam::123456789012:role/example",
}


def fresh_copy(parent: Path, name: str) -> Path:
    """A copy of what a clone has that the deploys read, with the stand-in builds: copied from a
    first one made once (the build's template is the same in every copy: its paths are relative
    to the build folder)."""
    pristine = parent / "pristine"
    if not pristine.exists():
        make_copy(pristine)
    work = parent / name
    shutil.copytree(pristine, work, symlinks=True)
    return work


def make_copy(work: Path) -> None:
    work.mkdir()
    for file in ("Makefile", "samconfig.toml", "template.yaml", "LICENSE", "README.md",
                 "pyproject.toml", "uv.lock"):
        shutil.copy2(REPO / file, work / file)
    shutil.copytree(REPO / "infra", work / "infra",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (work / ".venv").symlink_to(REPO / ".venv")
    for arch in ARCHS:
        stand_in_build(work, arch)


def stand_in_build(work: Path, arch: str) -> Path:
    """What `make sam-build ARCH=...` leaves in .aws-sam/build-ARCH, bootstrap aside."""
    build = work / ".aws-sam" / f"build-{arch}"
    artifact = build / FUNCTION
    artifact.mkdir(parents=True)
    bootstrap = artifact / "bootstrap"
    bootstrap.write_text("#!/bin/sh\n# stand-in for the function binary\n")
    bootstrap.chmod(0o755)
    template = get_template_data(str(work / "template.yaml"))
    template["Resources"][FUNCTION]["Properties"]["CodeUri"] = str(artifact.relative_to(work))
    built = build / "template.yaml"
    move_template(str(work / "template.yaml"), str(built), template)
    # The same template as JSON, which SAM reads with Python's json module (samcli's yaml_parse
    # tries JSON first): SAM parses the build's template five to seven times per deploy, and with
    # PyYAML's pure-Python loader that was about 3 of each deploy's 5 CPU seconds.
    built.write_text(json.dumps(get_template_data(str(built)), indent=2))
    return build


def run(command: list[str], work: Path, env: dict[str, str], answers: str) -> str:
    print(f"$ {shlex.join(command)}", flush=True)
    # A session of its own, without a terminal: SAM's hidden prompt (the NoEcho project key)
    # then reads standard input, as the visible ones do.
    done = subprocess.run(command, cwd=work, env=env, input=answers, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S, start_new_session=True)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise Failed(f"{shlex.join(command)} exited {done.returncode}:\n{output[-4000:]}")
    if "Changeset created successfully" not in output:
        raise Failed(f"{shlex.join(command)} created no change set:\n{output[-3000:]}")
    return output


def guided_answers(template: Path) -> str:
    """Enter for every question but the hidden ones (the project key and the slug map), which
    take "-"; the last Enters decline to execute the change set."""
    parameters = get_template_parameters(str(template))
    return "\n\n" + "".join(f"{NO_KEY}\n" if str(props.get("NoEcho")).lower() == "true"
                            else "\n" for props in parameters.values()) + "\n" * 20


def latest_change_set(cloudformation, stack: str) -> dict[str, str]:
    change_sets = cloudformation.list_change_sets(StackName=stack)["Summaries"]
    if not change_sets:
        raise Failed(f"CloudFormation has no change set of {stack}")
    latest = cloudformation.describe_change_set(
        StackName=stack, ChangeSetName=change_sets[-1]["ChangeSetId"])
    return {p["ParameterKey"]: p.get("ParameterValue") for p in latest.get("Parameters", [])}


def check_change_set(cloudformation, stack: str, expected: dict[str, str], count: int) -> None:
    found = len(cloudformation.list_change_sets(StackName=stack)["Summaries"])
    if found != count:
        raise Failed(f"expected {count} change set(s) of {stack}, CloudFormation has {found}")
    given = latest_change_set(cloudformation, stack)
    wrong = {name: (value, given.get(name)) for name, value in expected.items()
             if given.get(name) != value}
    if wrong:
        raise Failed(f"change set parameters of {stack} (wanted, given): {wrong}")


def guided_then_deploy(parent: Path, env: dict[str, str], cloudformation, guided_line: str,
                       deploy_line: str) -> None:
    """Steps 1 and 2: the first deploy, guided, then `make deploy` with its saved answers."""
    guided, deploy = (shlex.split(line, comments=True) for line in (guided_line, deploy_line))
    if guided[:2] != ["make", "deploy-guided"] or deploy[:2] != ["make", "deploy"]:
        raise Failed(f"the README's first deploy commands are {guided_line!r} and {deploy_line!r}, "
                     "not a guided deploy and then a deploy")
    arch = parse_pairs(guided[2:], guided_line, names=r"[A-Z_]+").get("ARCH", ARCH)
    work = fresh_copy(parent, "guided")
    build = work / ".aws-sam" / f"build-{arch}"
    run(["make", "-o", "sam-build", *guided[1:]], work, env, guided_answers(build / "template.yaml"))
    if (build / "samconfig.toml").exists():
        raise Failed("the guided run saved its answers in the build folder, which the next "
                     "build wipes")
    config = tomllib.loads((work / "samconfig.toml").read_text())
    stack = config["default"]["global"]["parameters"].get("stack_name")
    if stack != "memfault-chunk-proxy":
        raise Failed(f"samconfig.toml after the guided run: {config['default']}")
    if deployed_architecture(work / "samconfig.toml") != arch:
        raise Failed("the guided answers were not saved: " + str(config["default"]["deploy"]))
    if set(config) < {"dev", "prod"}:
        raise Failed(f"the guided run lost the other environments: {sorted(config)}")
    check_change_set(cloudformation, stack, {"Architecture": arch, "MemfaultProjectKey": NO_KEY,
                                             "ProjectKeys": NO_KEY, "Mode": "Direct"}, 1)
    print(f"--> README.md: `{guided_line}` read and saved the repository's samconfig.toml, took "
          "'-' for the hidden parameters, uploaded the code and created the change set", flush=True)

    run(["make", "-o", "sam-build", *deploy[1:]], work, env, "\n" * 5)
    check_change_set(cloudformation, stack, {"Architecture": arch, "Mode": "Direct"}, 2)
    print(f"--> README.md: `{deploy_line}` used the saved answers and created the change set",
          flush=True)


def documented_commands() -> list[tuple[str, str]]:
    """(document, command line) of every `make deploy` / `make deploy-guided` line in a shell
    block of the README and docs/, continuation lines joined, each command once."""
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    for document in DOCUMENTS:
        for block in SHELL_BLOCK.findall(document.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip()
                if DEPLOY_LINE.match(line):
                    words = tuple(shlex.split(line, comments=True))
                    found.setdefault(words, (document.relative_to(REPO).as_posix(), line))
    return list(found.values())


def made_up(match: re.Match[str]) -> str:
    """A value for a placeholder that fits the parameter it stands in for."""
    name = match.group(1).lower()
    if "arn" in name:
        return next((arn for word, arn in ARNS.items() if word in name), ARNS["role"])
    if "mail" in name or "address" in name:
        return "ops@example.com"
    if "key" in name:
        return "examplekey0123"
    return "example_name"


def check_parameters(params: dict[str, str], template: dict) -> None:
    for name, value in params.items():
        spec = template["Parameters"].get(name)
        if spec is None:
            raise Failed(f"PARAMS names {name}, which the template does not have")
        allowed = spec.get("AllowedValues")
        if allowed is not None and value not in [str(a) for a in allowed]:
            raise Failed(f"{name}={value}: the template allows {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise Failed(f"{name}={value}: the template's AllowedPattern {pattern} refuses it")


def documented_deploy(parent: Path, number: int, line: str, env: dict[str, str],
                      cloudformation) -> None:
    words = shlex.split(PLACEHOLDER.sub(made_up, line), comments=True)
    variables = parse_pairs(words[2:], line, names=r"[A-Z_]+")
    arch = variables.get("ARCH", ARCH)
    config_env = variables.get("CONFIG_ENV", "default")
    params = parse_pairs(shlex.split(variables.get("PARAMS", "")), f"PARAMS of {line}")
    work = fresh_copy(parent, f"documented-{number}")
    check_parameters(params, get_template_data(str(work / "template.yaml")))
    config = tomllib.loads((work / "samconfig.toml").read_text())
    stack = config[config_env]["global"]["parameters"]["stack_name"]
    guided = words[1] == "deploy-guided"
    secret = secret_parameters(work / "template.yaml")
    output = run(["make", "-o", "sam-build", *words[1:]], work, env,
                 guided_answers(work / ".aws-sam" / f"build-{arch}" / "template.yaml")
                 if guided else "\n" * 5)
    shown = [name for name in secret if params.get(name, NO_KEY) not in (NO_KEY, "")
             and params[name] in output]
    if shown:
        raise Failed(f"{line}: the output shows {shown} in full")
    # The guided run asks for the hidden parameters itself (and is given "-").
    expected = {name: value for name, value in params.items() if not (guided and name in secret)}
    given = latest_change_set(cloudformation, stack)
    wrong = {name: (value, given.get(name)) for name, value in {**expected, "Architecture": arch}.items()
             if given.get(name) != value}
    if wrong:
        raise Failed(f"{line}: change set parameters of {stack} (wanted, given): {wrong}")


RECIPE_FILE = re.compile(r"^<!-- file (\S+)(?: (\w+))? -->\n```json\n(.*?)^```", re.MULTILINE | re.DOTALL)
RECIPE_RUN = re.compile(r"^<!-- run(?: (\w+))? -->\n```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
MODES = ("Direct", "Queued", "Stream")
# moto's account, and a region of the recipe's own: the AWS CLI v1 sends SQS requests in most
# regions (us-east-1 among them) to the service's legacy host, whatever AWS_ENDPOINT_URL says
# (awscli.customizations.overridesslcommonname); me-central-1, where moto has IoT, is not among them.
ACCOUNT, REGION = "123456789012", "me-central-1"
# The user's rule before the recipe: another action of theirs, which the recipe must keep.
USERS_RULE = {"sql": "SELECT * FROM 'prod/+/+/memfault/#'", "description": "the fleet's own rule",
              "awsIotSqlVersion": "2016-03-23", "ruleDisabled": False,
              "actions": [{"republish": {"topic": "archive/${topic()}", "qos": 0,
                                         "roleArn": f"arn:aws:iam::{ACCOUNT}:role/fleet-archive"}}]}


def client(service: str):
    return boto3.client(service, region_name=REGION)


def stack_stand_ins(mode: str) -> dict[str, str]:
    """What a stack of the mode has that the recipe names, created in moto: its outputs."""
    if mode == "Direct":
        role = client("iam").create_role(
            RoleName="stand-in-function-role", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        function = client("lambda").create_function(
            FunctionName="memfault-chunk-proxy", Runtime="provided.al2023", Handler="bootstrap",
            Role=role["Role"]["Arn"], Code={"ZipFile": stand_in_zip()})
        return {"FunctionArn": function["FunctionArn"]}
    if mode == "Queued":
        sqs = client("sqs")
        url = sqs.create_queue(QueueName="memfault-chunk-proxy-IngestQueue")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"IngestQueueUrl": url, "IngestQueueArn": arn}
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="memfault-chunk-proxy-IngestStream", ShardCount=1)
    arn = kinesis.describe_stream_summary(
        StreamName="memfault-chunk-proxy-IngestStream")["StreamDescriptionSummary"]["StreamARN"]
    return {"IngestStreamName": "memfault-chunk-proxy-IngestStream", "IngestStreamArn": arn}


def stand_in_zip() -> bytes:
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\n")
    return buffer.getvalue()


def recipe_text(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "account id":
            return ACCOUNT
        if name == "region":
            return REGION
        if name not in values:
            raise Failed(f"docs/recipes.md, recipe 2: no value for the placeholder <{name}>")
        return values[name]
    return PLACEHOLDER.sub(value, text)


def run_recipe(parent: Path, env: dict[str, str], port: int, mode: str) -> None:
    """Step 4 for one mode, in a folder of its own and a moto emptied first."""
    recipes = RECIPES.read_text()
    files = [(name, body) for name, only, body in RECIPE_FILE.findall(recipes) if only in ("", mode)]
    commands = [body for only, body in RECIPE_RUN.findall(recipes) if only in ("", mode)]
    if not commands or "function-part.json" not in dict(files):
        raise Failed(f"docs/recipes.md has no recipe 2 commands or function-part.json for {mode}")
    urllib.request.urlopen(urllib.request.Request(f"http://localhost:{port}/moto-api/reset",
                                                  method="POST"), timeout=10).read()
    iot = client("iot")
    iot.create_topic_rule(ruleName="fleet_rule", topicRulePayload=USERS_RULE)
    values = stack_stand_ins(mode)
    work = parent / f"recipe-{mode}"
    work.mkdir()
    for name, body in files:
        (work / name).write_text(recipe_text(body, values))
    script = "\n".join(recipe_text(body, values) for body in commands)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work,
                          env={**env, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if done.returncode != 0:
        raise Failed(f"docs/recipes.md, recipe 2 ({mode}): the commands exited {done.returncode}:\n"
                     f"{script}\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    part = json.loads((work / "function-part.json").read_text())
    rule = iot.get_topic_rule(ruleName="fleet_rule")["rule"]
    wanted = {"sql": part["sql"], "description": USERS_RULE["description"],
              "actions": USERS_RULE["actions"] + part["actions"], "errorAction": part["errorAction"]}
    wrong = {key: (value, rule.get(key)) for key, value in wanted.items() if rule.get(key) != value}
    if wrong:
        raise Failed(f"recipe 2 ({mode}): the rule after replace-topic-rule (wanted, found): {wrong}")
    policy = client("iam").get_role_policy(RoleName="fleet-rule-to-chunk-proxy",
                                                 PolicyName="chunk-proxy-actions")["PolicyDocument"]
    if policy != json.loads((work / "rule-actions.json").read_text()):
        raise Failed(f"recipe 2 ({mode}): the rule role's policy is {policy}")
    if mode == "Direct":
        statements = json.loads(client("lambda").get_policy(
            FunctionName=values["FunctionArn"])["Policy"])["Statement"]
        if not any(s.get("Principal", {}).get("Service") == "iot.amazonaws.com" for s in statements):
            raise Failed(f"recipe 2 (Direct): IoT may not invoke the function: {statements}")


def aws_env(work: Path, port: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("AWS_", "MEMFAULT_"))
           and name not in ("ARCH", "CONFIG_ENV", "PARAMS", "STACK")}
    env.update({
        # "localhost": moto finds a template that SAM uploaded by the TemplateURL's path only
        # when the URL names that host.
        "AWS_ENDPOINT_URL": f"http://localhost:{port}",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(work / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        "SAM_CLI_TELEMETRY": "0", "MAKEFLAGS": "",
    })
    return env


def deploy_paths(work: Path, port: int) -> None:
    """Steps 1 to 4, against the moto server on `port`."""
    env = aws_env(work, port)
    os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(StackName=SAM_CLI_STACK_NAME,
                                TemplateBody=_get_stack_template(),
                                Tags=[{"Key": "ManagedStackSource", "Value": "AwsSamCli"}])
    commands = documented_commands()
    if len(commands) < 4 or commands[0][0] != "README.md":
        raise Failed(f"found only {commands} in README.md and docs/: is the search broken?")
    guided_then_deploy(work, env, cloudformation, commands[0][1], commands[1][1])
    for number, (document, line) in enumerate(commands[2:]):
        documented_deploy(work, number, line, env, cloudformation)
        print(f"--> {document}: `{line}` reached CloudFormation with its parameters", flush=True)
    for mode in MODES:
        run_recipe(work, env, port, mode)
        print(f"--> docs/recipes.md: recipe 2's commands, {mode} mode, attached the function "
              "to the user's rule with an error action and its role", flush=True)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="deploy-path-"))
    try:
        with moto_server(work / "moto.log") as port:
            deploy_paths(work, port)
    except (Failed, Refused, ClientError, subprocess.TimeoutExpired) as failure:
        print(f"deploy-path: FAILED: {failure}")
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("deploy-path: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
