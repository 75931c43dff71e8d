"""`make smoke` (infra/smoke.py) against stacks described from the real template.

Each stack description is what `aws cloudformation describe-stacks` answers for template.yaml
deployed with some parameters: every template parameter (NoEcho ones as `****`), the outputs that
the template keeps for those parameters, each with a made-up physical value. The topic rule that
`make smoke` reads is the template's own TopicRule rendered for those parameters, or, with
CreateTopicRule=false, the rule docs/recipes.md tells a user to build (its SQL for the layout,
its payload for the mode). A stand-in `aws` on PATH answers from them and records what was
published.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import smoke
from project_key import shorten
from template_model import Rendered

INFRA = Path(__file__).resolve().parents[2] / "infra"
REPO = INFRA.parent
RECIPES = REPO / "docs" / "recipes.md"
SMOKE = INFRA / "smoke.py"
KEY = "abcdefgh12345678"
SLUG_KEYS = "project-a=aaaabbbbcccc1111,project-b=ddddeeeeffff2222"
SERIAL = "smoke-1"


def physical(node: Any) -> Any:
    """A made-up physical value for a reference the template leaves to CloudFormation."""
    if isinstance(node, dict) and set(node) == {"Ref"}:
        name = node["Ref"]
        if name.endswith("Queue"):
            return f"https://sqs.us-east-1.amazonaws.com/123456789012/edge-{name}"
        return f"edge-{name}"
    if isinstance(node, dict) and set(node) == {"Fn::GetAtt"}:
        name, attribute = node["Fn::GetAtt"]
        return f"arn:aws:fake:us-east-1:123456789012:edge-{name}-{attribute}"
    if isinstance(node, dict):
        return {key: physical(value) for key, value in node.items()}
    if isinstance(node, list):
        return [physical(item) for item in node]
    return node


def camel(node: Any) -> Any:
    """CloudFormation's TopicRulePayload spelling to IoT's API spelling (Sql -> sql)."""
    if isinstance(node, dict):
        return {key[:1].lower() + key[1:]: camel(value) for key, value in node.items()}
    if isinstance(node, list):
        return [camel(item) for item in node]
    return node


def recipe_sql(layout: str) -> str:
    """The rule SQL docs/recipes.md gives for a layout (the line after `-- <layout>`)."""
    found = re.search(rf"^-- {layout}\b.*\n(SELECT .*)$", RECIPES.read_text(), re.MULTILINE)
    assert found, f"docs/recipes.md gives no SQL for {layout}"
    return found.group(1)


def recipe_payload(mode: str) -> dict[str, Any]:
    """The function's part of the rule that docs/recipes.md gives for a mode."""
    found = re.search(rf"^<!-- file function-part\.json {mode} -->\n```json\n(.*?)^```",
                      RECIPES.read_text(), re.MULTILINE | re.DOTALL)
    assert found, f"docs/recipes.md has no function-part.json for {mode}"
    payload = json.loads(found.group(1))
    assert smoke.MODE_ACTIONS[mode][0] in payload["actions"][0], payload
    return payload


class Stack:
    def __init__(self, raw: dict[str, Any], **parameters: str) -> None:
        self.rendered = Rendered(raw, **parameters)
        self.outputs = {name: str(physical(body["Value"]))
                        for name, body in self.rendered.outputs.items()}
        self.parameters = {
            name: "****" if str(spec.get("NoEcho")).lower() == "true"
            else str(self.rendered.parameters[name])
            for name, spec in raw["Parameters"].items()}

    def description(self) -> dict[str, Any]:
        return {"Stacks": [{
            "Parameters": [{"ParameterKey": k, "ParameterValue": v}
                           for k, v in self.parameters.items()],
            "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]}

    def rule(self) -> dict[str, Any]:
        """What `aws iot get-topic-rule` answers for the rule named TopicRuleName."""
        if "TopicRule" in self.rendered.resources:
            payload = camel(physical(self.rendered.props("TopicRule")["TopicRulePayload"]))
        else:  # the user's rule, as docs/recipes.md has them write it
            payload = recipe_payload(self.parameters["Mode"])
            text = json.dumps(payload)
            for name, value in self.outputs.items():
                text = text.replace(f"<{name}>", value)
            payload = json.loads(re.sub(r"<[^<>\"]+>", "example", text))
            payload["sql"] = recipe_sql(self.parameters["TopicLayout"])
        return {"ruleArn": "arn:aws:iot:us-east-1:123456789012:rule/x",
                "rule": {"ruleName": self.parameters["TopicRuleName"], **payload}}


def fake_aws(tmp_path: Path, stack: Stack, log_lines: list[dict[str, Any]]) -> dict[str, str]:
    """An `aws` answering get-topic-rule, get-function-configuration, describe-endpoint, publish
    and filter-log-events; and the environment that runs smoke.py with it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    (tmp_path / "stack.json").write_text(json.dumps(stack.description()))
    (tmp_path / "rule.json").write_text(json.dumps(stack.rule()))
    (tmp_path / "logs.json").write_text(json.dumps([json.dumps(line) for line in log_lines]))
    keys = SLUG_KEYS if stack.parameters["ProjectKeys"] == "****" else "None"
    script = bin_dir / "aws"
    script.write_text(f"""#!/bin/sh
echo "$*" >> "{tmp_path}/calls"
case "$1 $2" in
  "iot get-topic-rule") cat "{tmp_path}/rule.json" ;;
  "lambda get-function-configuration") echo '{keys}' ;;
  "iot describe-endpoint") echo example-ats.iot.us-east-1.amazonaws.com ;;
  "iot-data publish") echo "$@" > "{tmp_path}/published" ;;
  "logs filter-log-events") cat "{tmp_path}/logs.json" ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
""")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "SMOKE_STACK_JSON": str(tmp_path / "stack.json"), "SMOKE_SERIAL": SERIAL,
            "SMOKE_TIMEOUT": "0", "DRY_RUN": ""}


def run_smoke(env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SMOKE), "edge"], capture_output=True, text=True,
                          env={**env, **extra}, timeout=60)


def delivered(key: str | None = None) -> list[dict[str, Any]]:
    line = {"outcome": "delivered", "device_serial": SERIAL, "status": 202}
    return [{**line, "project_key": shorten(key)} if key else line]


def published_topic(tmp_path: Path) -> str:
    words = (tmp_path / "published").read_text().split()
    return words[words.index("--topic") + 1]


def published_bytes(tmp_path: Path) -> bytes:
    """What IoT receives: the CLI decodes a blob given in base64 only with that binary format."""
    words = (tmp_path / "published").read_text().split()
    assert words[words.index("--cli-binary-format") + 1] == "base64"
    return base64.b64decode(words[words.index("--payload") + 1])


# Every layout, every mode, the stack's own rule and a rule of the user's (CreateTopicRule=false).
CUSTOM = {"TopicLayout": "Custom", "TopicPattern": "fleet/+/devices/{device_serial}/memfault"}
GUIDE = {"TopicLayout": "MemfaultGuide", "ProjectKeys": SLUG_KEYS}
CASES = {
    "legacy": ({}, f"prod/smoke/{SERIAL}/memfault/{KEY}/chunk"),
    "guide": (GUIDE, f"memfault/project-a/{SERIAL}/chunks"),
    "custom": (CUSTOM, f"fleet/smoke/devices/{SERIAL}/memfault"),
}


def custom_parameters(raw: dict[str, Any], parameters: dict[str, str]) -> dict[str, str]:
    """Today's template asks a Custom layout for its filter too; a template that derives it
    does not have the parameter."""
    if parameters.get("TopicLayout") == "Custom" and "TopicFilter" in raw["Parameters"]:
        return {**parameters, "TopicFilter": "fleet/+/devices/+/memfault"}
    return parameters


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("mode", ["Direct", "Queued", "Stream"])
@pytest.mark.parametrize("own_rule", [True, False], ids=["own-rule", "existing-rule"])
def test_smoke_publishes_what_the_layout_and_the_rule_accept(
        raw, tmp_path: Path, case: str, mode: str, own_rule: bool) -> None:
    parameters, topic = CASES[case]
    parameters = custom_parameters(raw, {**parameters, "Mode": mode, "LogLevel": "DEBUG"})
    if not own_rule:
        parameters.update(CreateTopicRule="false", TopicRuleName="fleet_rule")
    stack = Stack(raw, **parameters)
    key = "aaaabbbbcccc1111" if case == "guide" else None
    done = run_smoke(fake_aws(tmp_path, stack, delivered(key)), MEMFAULT_PROJECT_KEY=KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout
    assert published_topic(tmp_path) == topic
    heartbeat = json.loads((REPO / "events" / "heartbeat.json").read_text())["data"]
    assert published_bytes(tmp_path) == base64.b64decode(heartbeat)
    calls = (tmp_path / "calls").read_text()
    rule_name = "memfault_chunk_proxy" if own_rule else "fleet_rule"
    assert f"iot get-topic-rule --rule-name {rule_name}" in calls
    assert "aaaabbbbcccc1111" not in done.stdout and KEY not in done.stdout


def test_the_guide_layout_posts_to_the_slug_asked_for(raw, tmp_path: Path) -> None:
    stack = Stack(raw, **GUIDE)
    env = fake_aws(tmp_path, stack, delivered("ddddeeeeffff2222"))
    done = run_smoke(env, SMOKE_PROJECT_SLUG="project-b")
    assert done.returncode == 0, done.stdout + done.stderr
    assert published_topic(tmp_path) == f"memfault/project-b/{SERIAL}/chunks"
    assert "project project-b (key dddd…)" in done.stdout


def test_a_slug_the_stack_does_not_have_is_refused(raw, tmp_path: Path) -> None:
    env = fake_aws(tmp_path, Stack(raw, **GUIDE), delivered())
    done = run_smoke(env, SMOKE_PROJECT_SLUG="project-z")
    assert done.returncode == 1
    assert "project-z is not one of the stack's projects: ['project-a', 'project-b']" in done.stdout
    assert not (tmp_path / "published").exists()


def test_a_delivery_to_another_project_fails(raw, tmp_path: Path) -> None:
    env = fake_aws(tmp_path, Stack(raw, **GUIDE), delivered("ddddeeeeffff2222"))
    done = run_smoke(env)  # project-a asked for, project-b's key logged
    assert done.returncode == 1 and "not the project's aaaa…" in done.stdout


def test_basic_ingest_publishes_behind_the_rule_the_stack_names(raw, tmp_path: Path) -> None:
    stack = Stack(raw, BasicIngest="true", CreateTopicRule="false", TopicRuleName="fleet_rule")
    done = run_smoke(fake_aws(tmp_path, stack, delivered()), MEMFAULT_PROJECT_KEY=KEY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert published_topic(tmp_path) == f"$aws/rules/fleet_rule/prod/smoke/{SERIAL}/memfault/{KEY}/chunk"


def test_an_existing_rule_without_the_stacks_action_is_named(raw, tmp_path: Path) -> None:
    stack = Stack(raw, Mode="Stream", LogLevel="DEBUG", CreateTopicRule="false",
                  TopicRuleName="fleet_rule")
    env = fake_aws(tmp_path, stack, delivered())
    rule = stack.rule()
    rule["rule"]["actions"] = [{"lambda": {"functionArn": stack.outputs["FunctionArn"]}}]
    (tmp_path / "rule.json").write_text(json.dumps(rule))
    done = run_smoke(env, MEMFAULT_PROJECT_KEY=KEY)
    assert done.returncode == 1
    assert "your rule fleet_rule has no kinesis action on the stack's IngestStreamName" in done.stdout
    assert not (tmp_path / "published").exists()


def test_a_rule_whose_filter_misses_the_layout_is_refused(raw, tmp_path: Path) -> None:
    stack = Stack(raw, **GUIDE, CreateTopicRule="false", TopicRuleName="fleet_rule")
    env = fake_aws(tmp_path, stack, delivered())
    rule = stack.rule()
    rule["rule"]["sql"] = recipe_sql("Legacy")  # the old layout's filter, guide-layout devices
    (tmp_path / "rule.json").write_text(json.dumps(rule))
    done = run_smoke(env)
    assert done.returncode == 1 and "does not match the rule's filter 'prod/+/+/memfault/#'" in done.stdout


def test_smoke_asks_for_debug_logs_in_batch_modes(raw, tmp_path: Path) -> None:
    done = run_smoke(fake_aws(tmp_path, Stack(raw, Mode="Stream"), delivered()),
                     MEMFAULT_PROJECT_KEY=KEY)
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "LogLevel=DEBUG" in done.stdout


def test_smoke_fails_on_a_refusal_and_on_silence(raw, tmp_path: Path) -> None:
    refusal = [{"outcome": "refused", "device_serial": SERIAL,
                "error_type": "Permanent.TopicMismatch"}]
    done = run_smoke(fake_aws(tmp_path / "a", Stack(raw), refusal), MEMFAULT_PROJECT_KEY=KEY)
    assert done.returncode == 1 and "TopicMismatch" in done.stdout

    other = [{"outcome": "delivered", "device_serial": "other", "status": 202}]
    done = run_smoke(fake_aws(tmp_path / "b", Stack(raw), other), MEMFAULT_PROJECT_KEY=KEY)
    assert done.returncode == 1 and "no log line" in done.stdout


def test_smoke_dry_run_prints_the_commands_and_shortens_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "MEMFAULT_PROJECT_KEY": KEY, "SMOKE_SERIAL": SERIAL, "DRY_RUN": "1"}
    env.pop("SMOKE_STACK_JSON", None)
    done = subprocess.run([sys.executable, str(SMOKE), "edge"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    commands = [line for line in done.stdout.splitlines() if line.startswith("$ ")]
    assert [c.split()[1:4] for c in commands] == [
        ["aws", "cloudformation", "describe-stacks"], ["aws", "iot", "get-topic-rule"],
        ["aws", "iot", "describe-endpoint"], ["aws", "iot-data", "publish"],
        ["aws", "logs", "filter-log-events"]]
    assert f"--topic prod/smoke/{SERIAL}/memfault/abcd…/chunk" in commands[3]
    assert KEY not in done.stdout


def test_the_smoke_tests_view_of_the_template_is_the_templates(raw) -> None:
    """smoke.py is standard library only, so it keeps the layouts and defaults it reads: they
    must be the template's."""
    for name, value in smoke.TEMPLATE_DEFAULTS.items():
        if name in raw["Parameters"]:
            assert str(raw["Parameters"][name].get("Default", "")) == value, name
    layouts = raw["Mappings"]["TopicLayouts"]
    assert {name: (body["Pattern"], body["Filter"]) for name, body in layouts.items()} == smoke.LAYOUTS
    for name in smoke.LAYOUTS:  # and the SQL the recipes give is the template's own rule's
        sql = Stack(raw, **(GUIDE if name == "MemfaultGuide" else {})).rendered.props(
            "TopicRule")["TopicRulePayload"]["Sql"]
        assert recipe_sql(name) == sql
    for mode, (_, _, output) in smoke.MODE_ACTIONS.items():
        assert output in Stack(raw, Mode=mode).outputs, (mode, output)


def test_the_readmes_cli_only_check_publishes_what_make_smoke_does() -> None:
    """The release path's check without a clone: the heartbeat chunk's bytes, on a topic the
    default layout's filter and pattern accept, looked for in the stack's log group."""
    readme = (REPO / "README.md").read_text().replace("\\\n", " ")
    (publish,) = [line for line in readme.splitlines() if line.startswith("aws iot-data publish")]
    words = publish.split()
    assert words[words.index("--cli-binary-format") + 1] == "base64"
    heartbeat = json.loads((REPO / "events" / "heartbeat.json").read_text())["data"]
    assert words[words.index("--payload") + 1] == heartbeat
    topic = words[words.index("--topic") + 1].strip('"').replace("<key>", KEY)
    pattern, topic_filter = smoke.LAYOUTS[smoke.TEMPLATE_DEFAULTS["TopicLayout"]]
    assert re.fullmatch(topic_filter.replace("+", "[^/]+").replace("#", ".*"), topic)
    assert topic == pattern.replace("+", "smoke").replace("{device_serial}", "smoke-test") \
        .replace("{project_key}", KEY)
    (search,) = [line for line in readme.splitlines() if line.startswith("aws logs filter-log-events")]
    assert "/aws/lambda/memfault-chunk-proxy" in search and '"smoke-test"' in search
