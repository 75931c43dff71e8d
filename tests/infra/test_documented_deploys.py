"""Every `make deploy` / `make deploy-guided` line of README.md and docs/ deploys as written: its
PARAMS pass the template's Rules and the refusals of a Custom layout (template_model renders them as
CloudFormation would), which moto server, behind `make deploy-path`, does not evaluate."""

from __future__ import annotations

import re
import shlex

import pytest

from deploy_path import PLACEHOLDER, documented_commands, made_up
from sam_deploy import parse_pairs, secret_parameters
from template_model import TEMPLATE, Rendered

SECRET = secret_parameters(TEMPLATE)


def deploys() -> list[tuple[str, str, dict[str, str]]]:
    """(document, line, the stack's parameters after it). A guided deploy is a first deploy, its
    hidden keys typed as the layout needs them; a plain deploy changes the parameters of the
    previous deploy of its document and CONFIG_ENV, which the stack keeps."""
    found, stacks = [], {}
    for document, line in documented_commands():
        words = shlex.split(PLACEHOLDER.sub(made_up, line), comments=True)
        variables = parse_pairs(words[2:], line, names=r"[A-Z_]+")
        params = parse_pairs(shlex.split(variables.get("PARAMS", "")), line)
        stack = (document, variables.get("CONFIG_ENV", "default"))
        if words[1] == "deploy-guided":
            slugs = params.get("TopicLayout") == "MemfaultGuide" or "{project_slug}" in params.get(
                "TopicPattern", "")
            typed = {"ProjectKeys": "project-a=examplekey0123,project-b=examplekey4567"} if slugs else {}
            stacks[stack] = {**{name: "-" for name in SECRET}, **typed, **params}
        else:
            stacks[stack] = {**stacks.get(stack, {}), **params}
        found.append((document, line, dict(stacks[stack])))
    return found


@pytest.mark.parametrize("document, line, parameters", deploys(),
                         ids=[re.sub(r"\s+", " ", line)[:90] for _, line, _ in deploys()])
def test_a_documented_deploy_passes_the_templates_checks(raw, document, line, parameters):
    Rendered(raw, **parameters)


def test_the_custom_recipe_keys_its_stream_by_the_serial(raw):
    """Its serial is at level 4, not the 3 of the other layouts: a stack that made the rule for
    it would key the stream by that level, as the recipe tells a rule of the user's to."""
    (custom,) = [p for d, _, p in deploys() if d == "docs/recipes.md" and p.get("TopicLayout") == "Custom"]
    rendered = Rendered(raw, **{**custom, "CreateTopicRule": "true"})
    (action,) = rendered.props("TopicRule")["TopicRulePayload"]["Actions"]
    assert action["Kinesis"]["PartitionKey"] == "${topic(4)}"
