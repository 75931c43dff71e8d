"""TopicLayout: the four places a topic layout lives agree, for every layout, mode and form.

A layout is in the device policy (which topics a device may publish to), the rule's FROM
filter (which topics reach the rule), the function's MEMFAULT_TOPIC_PATTERN (how it reads
serial and project) and, in Stream mode, the Kinesis partition key (which keeps a device's
chunks in order). For each combination the template is rendered as CloudFormation would,
and a device's topic is followed through all four with the semantics each one has: MQTT
filter matching, IoT policy globbing ("*" matches "/" too, policy variables substituted),
the pattern syntax of docs/configuration.md, and IoT SQL's topic(n) and clientid().
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from smoke import mqtt_matches
from template_model import Rendered, Refused

THING = "thing-42"
OTHER_THING = "thing-43"
THING_VARIABLE = "${iot:Connection.Thing.ThingName}"
TOPIC_ARN_PREFIX = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:topic/"
RULE_NAME = "memfault_chunk_proxy"
PROJECT_KEYS = "project-a=YOUR_PROJECT_A_KEY,project-b=YOUR_PROJECT_B_KEY"
LEGACY_PATTERN = "prod/+/{device_serial}/memfault/{project_key}/chunk"
LEGACY_FILTER = "prod/+/+/memfault/#"

# Layout cases: the parameters a user gives for each. Custom is tried with a slug, a '#'
# tail and the serial at level 4, and with a key level and the serial elsewhere. Both begin
# with a literal level, as docs/deploy.md asks: a derived policy that begins with '*' would
# allow a topic behind any prefix, the Basic Ingest one included.
LAYOUTS: dict[str, dict[str, str]] = {
    "MemfaultGuide": {"TopicLayout": "MemfaultGuide", "ProjectKeys": PROJECT_KEYS},
    "Legacy": {"TopicLayout": "Legacy"},
    "Custom-slug": {"TopicLayout": "Custom", "ProjectKeys": PROJECT_KEYS,
                    "TopicPattern": "fleet/{project_slug}/devices/{device_serial}/#",
                    "DeviceSerialTopicLevel": "4"},
    "Custom-key": {"TopicLayout": "Custom",
                   "TopicPattern": "things/{project_key}/+/{device_serial}",
                   "DeviceSerialTopicLevel": "4"},
}
MODES = ("Direct", "Queued", "Stream")
# What a device fills a pattern's levels with.
FILLERS = {"{project_slug}": "project-b", "{project_key}": "YOUR_PROJECT_KEY", "+": "board",
           "#": "extra/levels"}


def policy_allows(resource: str, topic: str, thing: str) -> bool:
    """IoT policy resources: policy variables substituted, '*' any characters ('/' too)."""
    assert resource.startswith(TOPIC_ARN_PREFIX), resource
    glob = resource.removeprefix(TOPIC_ARN_PREFIX).replace(THING_VARIABLE, thing)
    assert "${" not in glob, glob
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(regex, topic) is not None


def pattern_captures(pattern: str, topic: str) -> dict[str, str] | None:
    """docs/configuration.md's pattern syntax: the captures of a fitting topic, else None."""
    wanted, levels = pattern.split("/"), topic.split("/")
    open_ended = wanted[-1] == "#"
    fixed = wanted[:-1] if open_ended else wanted
    if len(levels) < len(fixed) or (not open_ended and len(levels) != len(fixed)):
        return None
    captures = {}
    for expected, level in zip(fixed, levels):
        if expected.startswith("{"):
            captures[expected.strip("{}")] = level
        elif expected != "+" and expected != level:
            return None
    return captures


def fill(pattern: str, serial: str) -> str:
    return "/".join(serial if level == "{device_serial}" else FILLERS.get(level, level)
                    for level in pattern.split("/"))


def partition_key(expression: str, topic: str, client_id: str) -> str:
    if expression == "${clientid()}":
        return client_id
    level = re.fullmatch(r"\$\{topic\((\d+)\)\}", expression)
    assert level, expression
    return topic.split("/")[int(level.group(1)) - 1]


def rule_filter(template: Rendered) -> str:
    sql = template.props("TopicRule")["TopicRulePayload"]["Sql"]
    found = re.fullmatch(r"SELECT .* FROM '([^']+)'", sql)
    assert found, sql
    return found.group(1)


def publish_resource(template: Rendered) -> str:
    (policy,) = template.of_type("AWS::IoT::Policy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (publish,) = [s for s in statements if s["Action"] == "iot:Publish"]
    return publish["Resource"]


def environment(template: Rendered) -> dict[str, Any]:
    return template.function()["Properties"]["Environment"]["Variables"]


@pytest.mark.parametrize("layout, mode, basic_ingest, client_id", list(itertools.product(
    LAYOUTS, MODES, ("false", "true"), ("false", "true"))))
def test_policy_filter_pattern_and_partition_key_agree(raw, layout, mode, basic_ingest, client_id):
    template = Rendered(raw, Mode=mode, BasicIngest=basic_ingest, CreateDevicePolicy="true",
                        DeviceSerialFromClientId=client_id, **LAYOUTS[layout])
    variables = environment(template)
    pattern = variables["MEMFAULT_TOPIC_PATTERN"]
    topic_filter = rule_filter(template)
    resource = publish_resource(template)
    prefix = f"$aws/rules/{RULE_NAME}/" if basic_ingest == "true" else ""
    # With Basic Ingest the rule gets the message whatever its FROM says, and topic() is the
    # topic without the prefix; the filter must match it all the same, so that turning Basic
    # Ingest off loses nothing.
    for topic in (fill(pattern, THING),
                  # What the policy allows, each '*' filled with one level.
                  resource.removeprefix(TOPIC_ARN_PREFIX + prefix)
                  .replace(THING_VARIABLE, THING).replace("*", "x")):
        assert policy_allows(resource, prefix + topic, THING), topic
        assert mqtt_matches(topic_filter, topic), (topic_filter, topic)
        captures = pattern_captures(pattern, topic)
        assert captures and captures["device_serial"] == THING, (pattern, topic)
        if mode == "Stream":
            (action,) = template.props("TopicRule")["TopicRulePayload"]["Actions"]
            assert partition_key(action["Kinesis"]["PartitionKey"], topic, THING) == THING
    # Only the form of the topic that Basic Ingest asks for, and only the device's own.
    own = fill(pattern, THING)
    other_form = own if prefix else f"$aws/rules/{RULE_NAME}/{own}"
    assert not policy_allows(resource, other_form, THING)
    assert not policy_allows(resource, prefix + fill(pattern, OTHER_THING), THING)
    # '*' in a policy matches '/' too, so the policy also allows another device's topic with
    # the device's own appended. The pattern refuses it by its level count, unless it ends in
    # '#': such a Custom layout needs DeviceSerialFromClientId (docs/deploy.md says so).
    spoof = f"{fill(pattern, OTHER_THING)}/{own}"
    assert policy_allows(resource, prefix + spoof, THING)
    spoofed = pattern_captures(pattern, spoof)
    assert spoofed is None or pattern.endswith("/#"), (pattern, spoof)
    # The project a topic names has a key: its slug is in the map, or the level is the key.
    captures = pattern_captures(pattern, own)
    if "project_slug" in captures:
        keys = dict(entry.split("=") for entry in variables["MEMFAULT_PROJECT_KEYS"].split(","))
        assert captures["project_slug"] in keys
        assert "MEMFAULT_PROJECT_KEY" not in variables
    else:
        assert "MEMFAULT_PROJECT_KEYS" not in variables
        assert "project_key" in captures


def test_each_layout_keeps_the_serial_at_the_level_it_says(raw):
    for name, layout in raw["Mappings"]["TopicLayouts"].items():
        levels = layout["Pattern"].split("/")
        assert int(layout["SerialLevel"]) == levels.index("{device_serial}") + 1, name


def test_the_guide_layout_is_memfaults_current_one(raw):
    guide = Rendered(raw, Mode="Stream", TopicLayout="MemfaultGuide", ProjectKeys=PROJECT_KEYS,
                     CreateDevicePolicy="true")
    variables = environment(guide)
    assert variables["MEMFAULT_TOPIC_PATTERN"] == "memfault/{project_slug}/{device_serial}/chunks"
    assert variables["MEMFAULT_PROJECT_KEYS"] == PROJECT_KEYS
    assert rule_filter(guide) == "memfault/+/+/chunks"
    assert publish_resource(guide) == f"{TOPIC_ARN_PREFIX}memfault/*/{THING_VARIABLE}/chunks"
    (action,) = guide.props("TopicRule")["TopicRulePayload"]["Actions"]
    assert action["Kinesis"]["PartitionKey"] == "${topic(3)}"


# --- parameters and the Rules that refuse combinations -----------------------------------


def test_layout_and_key_map_parameters(raw):
    layout = raw["Parameters"]["TopicLayout"]
    assert layout["AllowedValues"] == ["MemfaultGuide", "Legacy", "Custom"]
    # The default is what every stack created before the parameter existed gets on update.
    assert layout["Default"] == "Legacy"
    keys = raw["Parameters"]["ProjectKeys"]
    assert keys["NoEcho"] is True
    assert keys["Default"] == ""
    for ok in ("", "a=k", PROJECT_KEYS, "my_proj-1=" + "K" * 128):
        assert re.fullmatch(keys["AllowedPattern"], ok), ok
    # The function refuses these too (src/routing.rs, ProjectKeys); whitespace, which the
    # function ignores, is refused here for a value that shows nowhere once typed.
    for bad in ("a", "a=", "=k", "a=k,", "a=k,,b=l", "a=k b", "a=k=l", "a/b=k", "a=k;b=l"):
        assert not re.fullmatch(keys["AllowedPattern"], bad), bad
    assert raw["Parameters"]["TopicPattern"]["Default"] == ""
    # The rule's filter is derived (from the layout, or a Custom TopicPattern), not asked for.
    assert "TopicFilter" not in raw["Parameters"]


def test_a_stack_created_before_topic_layout_updates_to_the_same_resources(raw):
    """Such a stack keeps its parameters' values, the old defaults, and gets TopicLayout's
    default: the result is the Legacy layout, resource for resource. (Its TopicFilter, no
    longer a parameter, is dropped on update; the Legacy filter is the one it held.)"""
    stored = {"TopicPattern": LEGACY_PATTERN, "DeviceSerialTopicLevel": "3"}
    for mode, basic_ingest in itertools.product(MODES, ("false", "true")):
        common = {"Mode": mode, "BasicIngest": basic_ingest, "CreateDevicePolicy": "true"}
        updated = Rendered(raw, **common, **stored)
        assert updated.resources == Rendered(raw, TopicLayout="Legacy", **common).resources
        prefix = f"$aws/rules/{RULE_NAME}/" if basic_ingest == "true" else ""
        # The values the template had before TopicLayout, as they were written then.
        assert environment(updated)["MEMFAULT_TOPIC_PATTERN"] == LEGACY_PATTERN
        assert updated.props("TopicRule")["TopicRulePayload"]["Sql"] == (
            f"SELECT encode(*, 'base64') AS data, topic() AS topic FROM '{LEGACY_FILTER}'")
        assert publish_resource(updated) == \
            f"{TOPIC_ARN_PREFIX}{prefix}prod/*/{THING_VARIABLE}/memfault/*/chunk"


def test_a_stack_with_a_layout_of_its_own_is_refused_until_it_says_custom(raw):
    own = {"TopicPattern": "fleet/+/devices/{device_serial}/memfault", "DeviceSerialTopicLevel": "4"}
    for changed in own:
        with pytest.raises(Refused, match="LayoutParametersOnlyWithCustom"):
            Rendered(raw, Mode="Stream", **{changed: own[changed]})
    custom = Rendered(raw, Mode="Stream", TopicLayout="Custom", **own)
    assert environment(custom)["MEMFAULT_TOPIC_PATTERN"] == own["TopicPattern"]
    assert rule_filter(custom) == "fleet/+/devices/+/memfault"


def test_moving_an_old_stack_to_the_guide_needs_only_the_layout_and_the_keys(raw):
    moved = Rendered(raw, TopicLayout="MemfaultGuide", ProjectKeys=PROJECT_KEYS,
                     TopicPattern=LEGACY_PATTERN)
    assert rule_filter(moved) == "memfault/+/+/chunks"


@pytest.mark.parametrize("parameters, rule", [
    ({"TopicLayout": "Custom"}, "CustomLayoutIsComplete"),
    ({"TopicLayout": "Custom", "CreateTopicRule": "false"}, "CustomLayoutIsComplete"),
    ({"TopicLayout": "MemfaultGuide"}, "GuideLayoutHasItsKeys"),
    ({"TopicLayout": "MemfaultGuide", "MemfaultProjectKey": "k"}, "GuideLayoutHasItsKeys"),
    ({"TopicLayout": "MemfaultGuide", "ProjectKeys": "a=k", "MemfaultProjectKey": "k"},
     "OneSourceOfKeys"),
    ({"ProjectKeys": "a=k"}, "LegacyLayoutHasNoSlugs"),
    ({"TopicLayout": "MemfaultGuide", "ProjectKeys": "a=k",
      "TopicPattern": "memfault/{project_slug}/{device_serial}/chunks"},
     "LayoutParametersOnlyWithCustom"),
])
def test_combinations_that_cannot_work_are_refused_before_anything_changes(raw, parameters, rule):
    with pytest.raises(Refused) as refused:
        Rendered(raw, **parameters)
    assert any(failure.startswith(f"{rule}: ") for failure in refused.value.failures), \
        refused.value.failures



# What the function refuses at init (src/routing, Router::new and TopicPattern) in a Custom
# layout, and a level that disagrees with the pattern's: refused when the change set is made,
# the missing export's name saying what to change.
@pytest.mark.parametrize("parameters, says", [
    ({"TopicPattern": "fleet/{project_slug}/devices/{device_serial}/#"},
     "TopicPattern-names-the-project-slug:give-each-projects-key-in-ProjectKeys"),
    ({"TopicPattern": "fleet/{project_slug}/devices/{device_serial}/#", "ProjectKeys": "-"},
     "TopicPattern-names-the-project-slug:give-each-projects-key-in-ProjectKeys"),
    ({"TopicPattern": "fleet/{project_slug}/devices/{device_serial}/#", "MemfaultProjectKey": "k"},
     "TopicPattern-names-the-project-slug:give-each-projects-key-in-ProjectKeys"),
    ({"TopicPattern": "fleet/+/devices/{device_serial}/memfault", "ProjectKeys": "a=k"},
     "ProjectKeys-needs-a-project-slug-level-in-TopicPattern:add-one-or-leave-ProjectKeys-empty"),
    ({"TopicPattern": "things/{project_key}/+/{device_serial}", "ProjectKeys": "a=k"},
     "ProjectKeys-needs-a-project-slug-level-in-TopicPattern:add-one-or-leave-ProjectKeys-empty"),
    ({"TopicPattern": "fleet/+/devices/memfault"},
     "TopicPattern-needs-one-level-that-is-the-device-serial-capture"),
    ({"TopicPattern": "fleet/+/devices/sn-{device_serial}"},
     "TopicPattern-needs-one-level-that-is-the-device-serial-capture"),
    ({"TopicPattern": "fleet/+/devices/{device_serial}/memfault", "DeviceSerialTopicLevel": "3"},
     "DeviceSerialTopicLevel-is-not-the-serial-level-of-TopicPattern:set-it-to-0"),
])
@pytest.mark.parametrize("mode", MODES)
def test_a_custom_layout_the_function_would_refuse_is_refused_at_deploy(raw, parameters, says, mode):
    with pytest.raises(Refused) as refused:
        Rendered(raw, TopicLayout="Custom", Mode=mode, **parameters)
    assert refused.value.failures == [f"No export named {says} found"]


@pytest.mark.parametrize("case", ["Custom-slug", "Custom-key"])
def test_a_consistent_custom_layout_imports_nothing(raw, case):
    for mode in MODES:
        parameters = {**LAYOUTS[case], "Mode": mode}
        with_level = Rendered(raw, **parameters)
        parameters.pop("DeviceSerialTopicLevel")
        assert Rendered(raw, **parameters).resources == with_level.resources
        assert "Fn::ImportValue" not in str(with_level.resources)


@pytest.mark.parametrize("pattern, allowed", [
    ("", True),
    ("fleet/+/devices/{device_serial}/memfault", True),
    ("fleet/{project_slug}/devices/{device_serial}/#", True),
    ("prod/+/{device_serial}/memfault/{project_key}/chunk", True),
    ("{device_serial}/chunks", True),
    ("fleet/+/devices/memfault", True),  # no serial: refused at the change set (above)
    ("a/#/b", False),  # the function: '#' may only be the last level
    ("a/sn-{device_serial}", False),  # a capture fills a whole level
    ("a/b+/c", False),
    ("a/{serial}/b", False),  # unknown capture
    ("a/{device_serial}/{device_serial}", False),  # a capture once
    ("a/{project_key}/{project_key}/{device_serial}", False),
    ("a/{project_slug}/{project_key}/{device_serial}", False),  # one project capture
    ("a'/{device_serial}", False),  # the rule's SQL quotes the filter
])
def test_topic_pattern_takes_the_functions_syntax(raw, pattern, allowed):
    assert bool(re.fullmatch(raw["Parameters"]["TopicPattern"]["AllowedPattern"], pattern)) is allowed
