"""template.yaml as CloudFormation would see it for one set of parameter values.

A small evaluator for the tests: it decodes the YAML with cfn-lint's decoder, checks the
Rules' assertions (raising Refused, as CloudFormation refuses such parameters before it
changes anything), evaluates Conditions, drops resources and outputs whose Condition is
false, resolves Fn::If, Ref to parameters (Number parameters become ints), Ref
AWS::NoValue, Fn::FindInMap, Fn::Split, Fn::Select, the parameter parts of Fn::Sub (a Sub
becomes its string, with "${!x}" unescaped to "${x}") and Fn::Join once all its parts are
strings (in Conditions too); Fn::ImportValue, which CloudFormation fails when no stack exports
the name, raises Refused with that name (the template imports only to refuse).
References to resources and pseudo parameters are left as they are ({"Ref": ...},
{"Fn::GetAtt": [...]}, "${AWS::Region}" inside a Sub's string).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"

_NO_VALUE = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def load_raw(path: Path = TEMPLATE) -> dict[str, Any]:
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


class Refused(Exception):
    """The parameters fail the template's Rules: each failure is "<rule>: <AssertDescription>"."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


class Rendered:
    def __init__(self, raw: dict[str, Any], **overrides: str) -> None:
        self.raw = raw
        parameters = raw["Parameters"]
        unknown = set(overrides) - set(parameters)
        if unknown:
            raise KeyError(f"unknown parameters {sorted(unknown)}")
        self.parameters: dict[str, Any] = {}
        for name, spec in parameters.items():
            value = str(overrides.get(name, spec.get("Default", "")))
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(a) for a in allowed]:
                raise ValueError(f"{name}={value!r} not in {allowed}")
            self.parameters[name] = int(value) if spec["Type"] == "Number" else value
        self.mappings = raw.get("Mappings", {})
        self._condition_specs = raw.get("Conditions", {})
        failures = self._rule_failures(raw.get("Rules", {}))
        if failures:
            raise Refused(failures)
        self.conditions = {name: self._condition(name) for name in self._condition_specs}
        self.resources = self._kept(raw["Resources"])
        self.outputs = self._kept(raw.get("Outputs", {}))

    def _kept(self, section: dict[str, Any]) -> dict[str, Any]:
        kept = {}
        for name, body in section.items():
            condition = body.get("Condition")
            if condition is None or self.conditions[condition]:
                kept[name] = self.resolve(body)
        return kept

    def _rule_failures(self, rules: dict[str, Any]) -> list[str]:
        failures = []
        for name, rule in rules.items():
            if "RuleCondition" in rule and not self._evaluate(rule["RuleCondition"]):
                continue
            for assertion in rule["Assertions"]:
                if not self._evaluate(assertion["Assert"]):
                    failures.append(f"{name}: {assertion['AssertDescription']}")
        return failures

    def _condition(self, name: str) -> bool:
        return self._evaluate(self._condition_specs[name])

    def _evaluate(self, node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Condition":
                return self._condition(arg)
            if key == "Fn::Equals":
                left, right = (self._evaluate(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._evaluate(arg[0])
            if key == "Fn::And":
                return all(self._evaluate(a) for a in arg)
            if key == "Fn::Or":
                return any(self._evaluate(a) for a in arg)
            if key == "Fn::Contains":
                values, value = arg
                return str(self._evaluate(value)) in [str(self._evaluate(v)) for v in values]
            if key == "Ref":
                return self.parameters[arg]
            if key in ("Fn::Select", "Fn::Split", "Fn::Join"):
                return self.resolve({key: [self._evaluate(a) for a in arg]})
        if isinstance(node, list):
            return [self._evaluate(item) for item in node]
        return node

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.conditions[condition] else when_false)
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                if arg in self.parameters:
                    return self.parameters[arg]
                return node
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::FindInMap":
                mapping, top, second = (self.resolve(part) for part in arg)
                return self.mappings[mapping][top][second]
            if key == "Fn::Split":
                delimiter, source = arg[0], self.resolve(arg[1])
                if isinstance(source, str):
                    return source.split(delimiter)
                return {key: [delimiter, source]}
            if key == "Fn::Join":
                delimiter, parts = arg[0], self.resolve(arg[1])
                if all(isinstance(part, str) for part in parts):
                    return delimiter.join(parts)
                return {key: [delimiter, parts]}
            if key == "Fn::Select":
                index, items = int(self.resolve(arg[0])), self.resolve(arg[1])
                if isinstance(items, list):
                    if index >= len(items):
                        raise IndexError(f"Fn::Select cannot select nonexistent value at index {index}")
                    return items[index]
                return {key: [index, items]}
            if key == "Fn::ImportValue":
                # The template exports nothing another stack of it could provide: each import
                # is a refusal, whose export name says what to change (see MEMFAULT_TOPIC_PATTERN).
                raise Refused([f"No export named {self.resolve(arg)} found"])
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _NO_VALUE}

    def _sub(self, arg: Any) -> Any:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if name in self.parameters:
                return str(self.parameters[name])
            return match.group(0)

        # Left in place: pseudo parameters and resource attributes, e.g. "${AWS::Region}".
        return _SUB_VARIABLE.sub(replace, text)

    def of_type(self, resource_type: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == resource_type}

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id]["Properties"]

    def function(self) -> dict[str, Any]:
        (fn,) = self.of_type("AWS::Serverless::Function").values()
        return fn

    def statements(self, role: str) -> list[dict[str, Any]]:
        found = []
        for policy in self.props(role).get("Policies", []):
            found += as_list(policy["PolicyDocument"]["Statement"])
        return found

    def grants(self, role: str) -> dict[str, list[Any]]:
        """Action -> resources it is allowed on, for a role's inline policies."""
        table: dict[str, list[Any]] = {}
        for statement in self.statements(role):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                table.setdefault(action, []).extend(as_list(statement["Resource"]))
        return table


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def arn_of(name: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [name, "Arn"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
