"""`make smoke STACK=...`: is a deployed stack forwarding? Publishes a known test chunk through
AWS IoT Core, as a device would, and waits for the function's log line saying that Memfault
answered 202 for it. Ends with one verdict line, PASS or FAIL, and exit status 0 or 1.

    python3 infra/smoke.py STACK          (AWS CLI v2 and credentials for the stack's account)
    DRY_RUN=1 python3 infra/smoke.py STACK   prints the commands instead of running them

Environment:
  MEMFAULT_PROJECT_KEY  the project key the topic carries, when the stack's topic layout has
                        {project_key} (Legacy; always shortened when printed)
  SMOKE_PROJECT_SLUG    MemfaultGuide (or a Custom pattern with {project_slug}): the project to
                        post to; default: the first slug of the function's MEMFAULT_PROJECT_KEYS
                        (read from its configuration; only the slug and a shortened key are shown)
  SMOKE_SERIAL          the device serial to publish as (default: smoke-test-<unix time>, a device
                        Memfault then lists; reuse one serial to keep it to one)
  SMOKE_TIMEOUT         seconds to wait for the log line (default 120)
  SMOKE_STACK_JSON      a `describe-stacks` answer to use instead of asking CloudFormation
                        (with DRY_RUN=1, the default is the template's defaults)

The chunk is the one of events/heartbeat.json (Memfault's own test chunk format). The topic:
the stack's layout's pattern (Legacy and MemfaultGuide as in the template's TopicLayouts mapping,
Custom: TopicPattern), captures filled in and `+` levels read `smoke`, behind
`$aws/rules/<TopicRuleName>/` with BasicIngest=true. It must match the FROM filter of the topic
rule named TopicRuleName, read from IoT: the stack's own rule, or with CreateTopicRule=false the
rule you attached the stack to, which must then have the action of the stack's mode (a Lambda
action on FunctionArn, an SQS action on IngestQueueUrl, a Kinesis action on IngestStreamName;
docs/recipes.md). In Direct mode each delivery is logged at INFO; in Queued and Stream modes a
delivery's own line is at DEBUG (batches log a summary), so the smoke test asks for
LogLevel=DEBUG there. Standard library only: it runs before any venv.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from project_key import shorten

REPO = Path(__file__).resolve().parents[1]
POLL_S = 5
# The template's defaults of the parameters read here, and its TopicLayouts mapping
# (tests/infra/test_smoke.py holds both to template.yaml).
TEMPLATE_DEFAULTS = {
    "Mode": "Direct", "BasicIngest": "false", "TopicRuleName": "memfault_chunk_proxy",
    "TopicLayout": "Legacy", "TopicPattern": "", "DeviceSerialFromClientId": "false",
    "CreateTopicRule": "true", "LogLevel": "INFO",
}
LAYOUTS = {
    "MemfaultGuide": ("memfault/{project_slug}/{device_serial}/chunks", "memfault/+/+/chunks"),
    "Legacy": ("prod/+/{device_serial}/memfault/{project_key}/chunk", "prod/+/+/memfault/#"),
}
# The rule action that reaches the stack, per mode: (action, its field, the stack output).
MODE_ACTIONS = {
    "Direct": ("lambda", "functionArn", "FunctionArn"),
    "Queued": ("sqs", "queueUrl", "IngestQueueUrl"),
    "Stream": ("kinesis", "streamName", "IngestStreamName"),
}


class Fail(Exception):
    pass


class Aws:
    """Runs `aws` commands, or only prints them (DRY_RUN). Printed commands show the project
    key shortened: they are for reading, and end up in terminals and CI logs."""

    def __init__(self, dry_run: bool, secret: str | None) -> None:
        self.dry_run = dry_run
        self.secret = secret

    def shown(self, command: list[str]) -> str:
        text = shlex.join(command)
        return text.replace(self.secret, shorten(self.secret)) if self.secret else text

    def run(self, command: list[str], note: str = "") -> str:
        print(f"$ {self.shown(command)}{'   # ' + note if note else ''}", flush=True)
        if self.dry_run:
            return ""
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Fail(f"{command[0]} {command[1]} {command[2]} failed: {done.stderr.strip()}")
        return done.stdout



def mqtt_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7: '+' is one level, a last '#' any number of levels, zero too."""
    levels = topic.split("/")
    for index, wanted in enumerate(topic_filter.split("/")):
        if wanted == "#":
            return True
        if index >= len(levels) or wanted not in ("+", levels[index]):
            return False
    return len(levels) == len(topic_filter.split("/"))

def stack_settings(aws: Aws, stack: str) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's parameters (template defaults filled in) and outputs."""
    command = ["aws", "cloudformation", "describe-stacks", "--stack-name", stack,
               "--output", "json"]
    given = os.environ.get("SMOKE_STACK_JSON")
    if given:
        answer = json.loads(Path(given).read_text())
    else:
        text = aws.run(command)
        if not text:  # dry run: what a stack deployed with the template's defaults answers
            print("  (dry run: assuming the template's default parameters)")
            return dict(TEMPLATE_DEFAULTS), {"LogGroupName": f"/aws/lambda/{stack}"}
        answer = json.loads(text)
    found = answer["Stacks"][0]
    parameters = dict(TEMPLATE_DEFAULTS)
    parameters.update({p["ParameterKey"]: p.get("ParameterValue", "")
                       for p in found.get("Parameters", [])})
    outputs = {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}
    return parameters, outputs


def pattern_of(parameters: dict[str, str]) -> str:
    layout = parameters["TopicLayout"]
    if layout in LAYOUTS:
        return LAYOUTS[layout][0]
    if not parameters["TopicPattern"]:
        raise Fail(f"TopicLayout={layout} and no TopicPattern: the stack cannot route a topic")
    return parameters["TopicPattern"]


def filter_of(parameters: dict[str, str]) -> str:
    """The filter the template gives the stack's own rule: the layout's, or for Custom the
    pattern with each capture (a whole level) a `+` (or TopicFilter, where the stack has one)."""
    layout = parameters["TopicLayout"]
    if layout in LAYOUTS:
        return LAYOUTS[layout][1]
    return parameters.get("TopicFilter") or re.sub(r"\{[a-z_]+\}", "+", pattern_of(parameters))


def topic_for(parameters: dict[str, str], serial: str, captures: dict[str, str | None],
              topic_filter: str) -> str:
    if parameters["DeviceSerialFromClientId"] == "true":
        raise Fail("DeviceSerialFromClientId=true: the serial is the publisher's MQTT client id, "
                   "which `aws iot-data publish` (HTTPS) does not have; publish from a device")
    pattern = pattern_of(parameters)
    if "{device_serial}" not in pattern:
        raise Fail(f"the stack's topic pattern {pattern!r} has no {{device_serial}}: its serial "
                   "comes from the rule, not the topic; publish from a device")
    levels = []
    for level in pattern.split("/"):
        capture = re.fullmatch(r"\{([a-z_]+)\}", level)
        if level == "{device_serial}":
            levels.append(serial)
        elif capture:
            value = captures.get(capture.group(1))
            if not value:
                raise Fail(f"the stack's topic pattern {pattern!r} carries {level}: "
                           f"{CAPTURE_HINTS.get(capture.group(1), 'publish from a device')}")
            levels.append(value)
        elif level in ("+", "#"):
            levels.append("smoke")
        else:
            levels.append(level)
    topic = "/".join(levels)
    if not mqtt_matches(topic_filter, topic):
        raise Fail(f"the topic {topic!r} does not match the rule's filter {topic_filter!r}: "
                   "the rule would not see it")
    if parameters["BasicIngest"] == "true":
        topic = f"$aws/rules/{parameters['TopicRuleName']}/{topic}"
    return topic


CAPTURE_HINTS = {
    "project_key": "set MEMFAULT_PROJECT_KEY to the key of the Memfault project to post to",
    "project_slug": "set SMOKE_PROJECT_SLUG to one of the slugs of ProjectKeys",
}


def rule_filter(aws: Aws, parameters: dict[str, str], outputs: dict[str, str]) -> str:
    """The FROM filter of the rule that feeds the stack, once its action of the stack's mode is
    found on it (with CreateTopicRule=false, TopicRuleName names the rule you attached)."""
    name = parameters["TopicRuleName"]
    whose = "the stack's rule" if parameters["CreateTopicRule"] == "true" else "your rule"
    text = aws.run(["aws", "iot", "get-topic-rule", "--rule-name", name, "--output", "json"],
                   note=f"{whose}: its filter, and its action to the stack")
    if not text:  # dry run: what the template gives its own rule
        return filter_of(parameters)
    rule = json.loads(text)["rule"]
    found = re.search(r"\bFROM\s+'([^']+)'", rule.get("sql", ""), re.IGNORECASE)
    if not found:
        raise Fail(f"{whose} {name} has no FROM '<topic filter>' in its SQL: {rule.get('sql')!r}")
    action, field, output = MODE_ACTIONS[parameters["Mode"]]
    target = outputs.get(output, "")
    targets = [a.get(action, {}).get(field, "") for a in rule.get("actions", [])]
    if not target or not any(t == target or t.startswith(target + ":") for t in targets):
        raise Fail(f"{whose} {name} has no {action} action on the stack's {output} "
                   f"({target or 'no such output'}): in {parameters['Mode']} mode that is how "
                   "chunks reach the stack (docs/recipes.md, attaching to a rule you have)")
    return found.group(1)


def project_of_slug(aws: Aws, parameters: dict[str, str],
                    outputs: dict[str, str]) -> tuple[str | None, str | None]:
    """For a pattern with {project_slug}: a slug of the stack's projects and its key (None where
    not known). ProjectKeys is NoEcho, so the slugs come from the function's configuration; the
    answer holds the keys, and is never printed."""
    if "{project_slug}" not in pattern_of(parameters):
        return None, None
    wanted = os.environ.get("SMOKE_PROJECT_SLUG") or None
    function = outputs.get("FunctionName") or outputs.get("FunctionArn", "")
    text = aws.run(["aws", "lambda", "get-function-configuration", "--function-name", function,
                    "--query", "Environment.Variables.MEMFAULT_PROJECT_KEYS", "--output", "text"],
                   note="the slugs of ProjectKeys (the keys are not printed)").strip()
    if aws.dry_run:
        return wanted or "<first slug of ProjectKeys>", None
    keys = dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)
    if not keys:
        raise Fail("the function has no MEMFAULT_PROJECT_KEYS: the stack's topics name a project "
                   "by its slug, so deploy it with ProjectKeys=<slug>=<key>,...")
    slug = wanted or next(iter(keys))
    if slug not in keys:
        raise Fail(f"SMOKE_PROJECT_SLUG={slug} is not one of the stack's projects: {sorted(keys)}")
    print(f"  project {slug} (key {shorten(keys[slug])}) of {len(keys)}: {', '.join(keys)}")
    return slug, keys[slug]


def verdict(messages: list[str], serial: str, key: str | None = None) -> str | None:
    """'pass', or a failure reason, from the function's log lines naming the serial; None while
    nothing decides it yet. With the project's key known, the line must name it (shortened)."""
    for text in messages:
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if line.get("device_serial") != serial:
            continue
        if line.get("outcome") == "delivered" and line.get("status") == 202:
            if key and line.get("project_key") not in (None, shorten(key)):
                return (f"delivered with the key {line['project_key']}, not the project's "
                        f"{shorten(key)}")
            return "pass"
        if line.get("outcome") not in (None, "delivered"):
            return f"the function logged: {text.strip()}"
    return None


def smoke(stack: str, aws: Aws, serial: str, key: str | None, timeout_s: int) -> None:
    parameters, outputs = stack_settings(aws, stack)
    if parameters["Mode"] != "Direct" and parameters["LogLevel"] not in ("DEBUG", "TRACE"):
        raise Fail(f"in {parameters['Mode']} mode a delivery's own log line is at DEBUG and the "
                   f"stack logs at {parameters['LogLevel']}: deploy with LogLevel=DEBUG for the "
                   "smoke test (make deploy PARAMS=\"LogLevel=DEBUG\"), then again")
    topic_filter = rule_filter(aws, parameters, outputs)
    slug, slug_key = project_of_slug(aws, parameters, outputs)
    topic = topic_for(parameters, serial, {"project_key": key, "project_slug": slug}, topic_filter)
    log_group = outputs.get("LogGroupName", f"/aws/lambda/{stack}")
    event = json.loads((REPO / "events" / "heartbeat.json").read_text())
    chunk = base64.b64encode(base64.b64decode(event["data"])).decode()

    endpoint = aws.run(["aws", "iot", "describe-endpoint", "--endpoint-type", "iot:Data-ATS",
                        "--query", "endpointAddress", "--output", "text"]).strip()
    endpoint = endpoint or "<endpointAddress>"
    start_ms = int(time.time() * 1000)
    aws.run(["aws", "iot-data", "publish", "--endpoint-url", f"https://{endpoint}",
             # The payload is given in base64 and published as the bytes it stands for, the
             # chunk a device sends; raw-in-base64-out would publish the base64 text itself.
             "--topic", topic, "--qos", "1", "--cli-binary-format", "base64",
             "--payload", chunk],
            note=f"the chunk of events/heartbeat.json as device {serial}")
    search = ["aws", "logs", "filter-log-events", "--log-group-name", log_group,
              "--start-time", str(start_ms), "--filter-pattern", f'"{serial}"',
              "--query", "events[].message", "--output", "json"]
    if aws.dry_run:
        aws.run(search, note=f"every {POLL_S} s until a line says status 202, or {timeout_s} s")
        return
    wait_for_delivery(search, serial, slug_key, log_group, timeout_s)


def wait_for_delivery(search: list[str], serial: str, key: str | None, log_group: str,
                      timeout_s: int) -> None:
    deadline = time.monotonic() + timeout_s
    print(f"waiting up to {timeout_s} s for the function's log line in {log_group} …", flush=True)
    while True:
        done = subprocess.run(search, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise Fail(f"aws logs filter-log-events failed: {done.stderr.strip()}")
        found = verdict(json.loads(done.stdout or "[]") or [], serial, key)
        if found == "pass":
            return
        if found is not None:
            raise Fail(found)
        if time.monotonic() >= deadline:
            raise Fail(f"no log line says Memfault answered 202 for {serial} within {timeout_s} s: "
                       f"look at {log_group}, the rule's error queue and the quarantine queue "
                       "(docs/operations.md)")
        time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0]:
        print("usage: python3 infra/smoke.py STACK   (make smoke STACK=...)", file=sys.stderr)
        return 2
    stack = argv[0]
    key = os.environ.get("MEMFAULT_PROJECT_KEY") or None
    serial = os.environ.get("SMOKE_SERIAL") or f"smoke-test-{int(time.time())}"
    timeout_s = int(os.environ.get("SMOKE_TIMEOUT", "120"))
    dry_run = os.environ.get("DRY_RUN") == "1"
    started = time.monotonic()
    try:
        smoke(stack, Aws(dry_run, key), serial, key, timeout_s)
    except Fail as failure:
        print(f"smoke {stack}: FAIL: {failure}")
        return 1
    if dry_run:
        print(f"smoke {stack}: dry run, nothing sent")
    else:
        print(f"smoke {stack}: PASS: Memfault answered 202 for {serial} "
              f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
