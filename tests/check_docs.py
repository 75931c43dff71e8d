"""Docs that cannot drift: every name README.md and docs/ give a reader must exist where it says.

    python3 tests/check_docs.py [REPO]      (run by `make lint`; standard library only)

What is checked, in README.md and docs/*.md:
- each environment variable `MEMFAULT_...` (anywhere in the text) is named in src/;
- each log outcome value (`outcome="x"`, `outcome=x`, `outcome = "x"`, `outcome: x`) is a string
  the code writes (a snake_case string literal in src/);
- each backticked CamelCase name (two humps or more, e.g. `QuarantineQueue`, or the name in
  `Name=Value`) is a template parameter, resource, output, condition, rule or mapping key (any
  level: `Mappings.Tuning.Delivery.MaxAttempts` counts), a metric the template or the code
  names, a type of the code (src/, tests/, examples/, benches/: docs/development.md names
  them), or on ALLOWED below with its reason;
- each link to a file of the repository finds it, and its `#anchor` a heading there (GitHub's
  anchors: lower case, punctuation dropped, spaces as hyphens);
- no command calls a bare `sam`: a shell block line, or an inline command, starting `sam <sub>`
  (`.venv` holds the SAM CLI, the build is in .aws-sam/build-<arch> and samconfig.toml has
  environments: `make deploy`, `make deploy-guided`, `make sam-build` and `make validate` drive
  it). INLINE_SAM_ALLOWED lists the inline mentions that name a check rather than give a command;
- each dollar amount (`$0.418`, `$87,844`, `$3`) is a figure infra/cost_model.py produces (a
  price, a table cell or a figure it quotes), as rounded in the text: a price or total that the
  model does not produce has drifted from it;
- docs/cost-model.md holds the model's fleet tables exactly as `python3 infra/cost_model.py`
  prints them;
- a table row giving a template parameter's default (`| `Name` | `value` |`) or a fixed
  setting's value (a key of Mappings: Tuning) gives the template's; a value given in the text as
  `Name` N, `Name` of N or `Name=N` is one the template allows for a parameter (its bounds and
  allowed values), and is the template's for a fixed setting, which no deploy changes.

The template is read as text (the layout cfn-lint and the template tests keep: a section at
column 0, its entries at two spaces, mapping keys deeper), so that lint needs no venv;
tests/infra/test_check_docs.py holds that reading to cfn-lint's.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

SECTIONS = ("Parameters", "Resources", "Outputs", "Conditions", "Rules", "Mappings")
ENV_VAR = re.compile(r"\bMEMFAULT_[A-Z0-9_]*[A-Z0-9]\b")
OUTCOME = re.compile(r"\boutcome(?:\s*=\s*[\\\"'`]*|:\s*[\\\"'`]+)([a-z][a-z_]*)")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
CAMEL = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+")
FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SAM_COMMAND = re.compile(r"(?:^|&&|;|\|\||\$\(|\|)\s*(?:\$\s+)?sam\s+[a-z]")

# Names docs may give that are not ours, each with why it is not in src/ or template.yaml.
ALLOWED = {
    # AWS service metrics and attributes the template's alarms and the docs name
    "IteratorAge": "Lambda's metric for a stream mapping's lag",
    "ApproximateNumberOfMessagesVisible": "SQS metric",
    "ApproximateNumberOfMessages": "SQS queue attribute",
    "ApproximateAgeOfOldestMessage": "SQS metric",
    "ApproximateReceiveCount": "SQS message attribute",
    "NumberOfMessagesSent": "SQS metric",
    "AsyncEventAge": "Lambda metric",
    "AsyncEventsDropped": "Lambda metric",
    "DestinationDeliveryFailures": "Lambda metric",
    "ConcurrentExecutions": "Lambda metric",
    "IncomingRecords": "Kinesis metric",
    "WriteProvisionedThroughputExceeded": "Kinesis metric",
    "GetRecords": "Kinesis API",
    "PutRecord": "Kinesis API",
    "PutRecords": "Kinesis API",
    "SendMessage": "SQS API",
    "ReplaceTopicRule": "IoT API",
    "TopicRulePayload": "IoT rule property",
    "RuleMessageThrottled": "IoT metric",
    "TopicMatch": "IoT metric",
    "ParseError": "IoT metric",
    "RuleNotFound": "IoT metric",
    "ReportBatchItemFailures": "Lambda event source mapping setting",
    "BatchItemFailures": "Lambda's batch response field",
    "MaximumRecordAgeInSeconds": "Lambda event source mapping setting",
    "MaximumRetryAttempts": "Lambda event source mapping setting",
    "BisectBatchOnFunctionError": "Lambda event source mapping setting",
    "ParallelizationFactor": "Lambda event source mapping setting",
    "MaximumBatchingWindowInSeconds": "Lambda event source mapping setting",
    "ScalingConfig": "Lambda event source mapping setting",
    "MaximumConcurrency": "Lambda event source mapping setting",
    "FunctionResponseTypes": "Lambda event source mapping setting",
    "DestinationConfig": "Lambda setting",
    "OnFailure": "Lambda destination setting",
    "LoggingConfig": "Lambda function setting",
    "ReservedConcurrentExecutions": "Lambda function setting",
    "EventInvokeConfig": "SAM function property (AWS::Lambda::EventInvokeConfig)",
    "RedrivePolicy": "SQS queue setting",
    "VisibilityTimeout": "SQS queue setting",
    "MessageGroupId": "SQS FIFO message field",
    "MessageDeduplicationId": "SQS FIFO message field",
    "ContentBasedDeduplication": "SQS FIFO queue setting",
    "ShardId": "Kinesis record field",
    "SequenceNumber": "Kinesis record field",
    "PartitionKey": "Kinesis record field",
    "StreamModeDetails": "Kinesis stream setting",
    "UsePreviousValue": "CloudFormation parameter setting",
    "NoEcho": "CloudFormation parameter setting",
    "AllowedPattern": "CloudFormation parameter setting",
    "AllowedValues": "CloudFormation parameter setting",
    "AssertDescription": "CloudFormation rule field",
    "DeletionPolicy": "CloudFormation resource attribute",
    "UpdateReplacePolicy": "CloudFormation resource attribute",
    "TemplateURL": "CloudFormation request field",
    "BuildMethod": "SAM build setting",
    "CodeUri": "SAM function property",
    "CodeBucket": "the packaged template's parameter (infra/package_template.py)",
    "CodeKey": "the packaged template's parameter (infra/package_template.py)",
    "SemanticVersion": "SAR metadata field",
    "ThingName": "IoT policy variable",
    "RetryAfter": "HTTP header spelled as a word",
    "MemfaultChunkProxy": "the default metrics namespace (a value, in src/config.rs)",
    "ApplicationLogLevel": "Lambda LoggingConfig field",
    "ErrorActionFailure": "IoT metric",
    "ErrorActionSuccess": "IoT metric",
    "ActionType": "IoT metric dimension",
    "RuleName": "IoT metric dimension",
    "EventCount": "Lambda event source mapping metric",
    "PolledEventCount": "Lambda event source mapping metric",
    "EventSourceMappingUUID": "Lambda metric dimension",
    "MetricsConfig": "Lambda event source mapping setting",
    "ProvisionedThroughputExceededException": "Kinesis error",
    "UpdateStreamRecordDistributionStrategy": "Kinesis API named in a reference",
    "EnvFilter": "tracing-subscriber's type, which the function does not use",
}
# Spans that are not names of ours in CamelCase: errorTypes (`Permanent.TopicMismatch`, built
# from the error's class; docs/delivery.md lists them), IAM actions (`s3:PutObject`), AWS
# metric namespaces (`AWS/IoT`) and resource types (`AWS::IoT::TopicRule`).
NOT_NAMES = re.compile(r"(?:Permanent|Retryable|Runtime)\.\w+|[a-z0-9-]+:\S+|AWS/\S+|AWS::\S+")
INLINE_SAM_ALLOWED = {
    "sam validate --lint": "a check `make validate` runs, named as such",
    "sam build": "the build step `make sam-build` runs, named as such",
    "sam deploy": "the SAM CLI's command that `make deploy` runs, named as such",
    "sam deploy --guided": "the SAM CLI's command that `make deploy-guided` runs, named as such",
}


MONEY = re.compile(r"\$(\d[\d,]*(?:\.\d+)?)")
TABLE_ROW = re.compile(r"^\| `([A-Za-z0-9]+)` \| (?:`([^`]*)`|(empty)) \|", re.MULTILINE)
SETTING_IN_TEXT = re.compile(r"`([A-Z][A-Za-z0-9]+)(?:`(?: of)? |=)(-?\d+)\b")


@dataclass
class Known:
    template: set[str] = field(default_factory=set)
    metrics: set[str] = field(default_factory=set)
    src_text: str = ""
    src_strings: set[str] = field(default_factory=set)
    code_words: set[str] = field(default_factory=set)
    parameters: dict[str, dict[str, str]] = field(default_factory=dict)
    tuning: dict[str, str] = field(default_factory=dict)
    figures: set[float] = field(default_factory=set)
    cost_tables: str = ""

    def names(self) -> set[str]:
        return self.template | self.metrics | self.code_words | set(ALLOWED)


def template_names(text: str) -> tuple[set[str], set[str]]:
    """The names a reader may meet: entries of each section (Mappings at every level), and
    the metrics the alarms watch."""
    names: set[str] = set()
    section = None
    for line in text.splitlines():
        top = re.fullmatch(r"([A-Za-z]+):.*", line)
        if top:
            section = top.group(1)
            continue
        entry = re.fullmatch(r"(  +)([A-Za-z0-9]+):.*", line)
        if section in SECTIONS and entry:
            depth = len(entry.group(1)) // 2
            if depth == 1 or (section == "Mappings" and depth <= 3):
                names.add(entry.group(2))
    metrics = set(re.findall(r"MetricName:\s*['\"]?([A-Za-z0-9]+)", text))
    return names, metrics


def template_settings(text: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Each parameter's Default, MinValue, MaxValue and AllowedValues, and each Mappings: Tuning
    value, from the template's text (the layout described above)."""
    parameters: dict[str, dict[str, str]] = {}
    tuning: dict[str, str] = {}
    section, name, mapping = None, None, None
    for line in text.splitlines():
        top = re.fullmatch(r"([A-Za-z]+):.*", line)
        if top:
            section = top.group(1)
            continue
        if section == "Parameters":
            if entry := re.fullmatch(r"  ([A-Za-z0-9]+):\s*", line):
                name = entry.group(1)
                parameters[name] = {}
            elif name and (prop := re.fullmatch(r"    (Default|MinValue|MaxValue|AllowedValues): (.*)", line)):
                parameters[name][prop.group(1)] = prop.group(2).strip().strip('"')
        elif section == "Mappings":
            if entry := re.fullmatch(r"  ([A-Za-z0-9]+):\s*", line):
                mapping = entry.group(1)
            elif mapping == "Tuning" and (value := re.fullmatch(r"      ([A-Za-z0-9]+): (\S+)", line)):
                tuning[value.group(1)] = value.group(2).strip('"')
    return parameters, tuning


def cost_figures(repo: Path) -> tuple[set[float], str]:
    """The cost model's figures and fleet tables; the model reads this repository's template."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("cost_model", repo / "infra" / "cost_model.py")
    model = importlib.util.module_from_spec(spec)
    sys.modules["cost_model"] = model  # dataclasses look their module up while the class is made
    spec.loader.exec_module(model)
    return model.figures(), model.fleet_tables()


def known(repo: Path) -> Known:
    template, template_metrics = template_names((repo / "template.yaml").read_text())
    src_text = "\n".join(path.read_text() for path in sorted((repo / "src").rglob("*.rs")))
    literals = set(re.findall(r"\"([A-Za-z][A-Za-z0-9_]*)\"", src_text))
    metrics = template_metrics | {s for s in literals if CAMEL.fullmatch(s)}
    # Types and functions the docs on development name, wherever the code has them; not in the
    # tooling's tests (tests/infra), which make names up on purpose.
    code = [path for folder in ("src", "tests", "examples", "benches")
            for path in sorted((repo / folder).rglob("*")) if path.suffix in (".rs", ".py")
            and (repo / "tests" / "infra") not in path.parents]
    words = set(re.findall(r"\b[A-Z][A-Za-z0-9]+\b", "\n".join(p.read_text() for p in code)))
    parameters, tuning = template_settings((repo / "template.yaml").read_text())
    figures, cost_tables = cost_figures(repo)
    return Known(template, metrics, src_text, {s for s in literals if re.fullmatch(r"[a-z_]+", s)},
                 {w for w in words if CAMEL.fullmatch(w)}, parameters, tuning, figures, cost_tables)


def money_problems(text: str, names: Known) -> list[str]:
    problems = []
    prose = INLINE.sub("", FENCE.sub("", text))
    for amount in dict.fromkeys(MONEY.findall(prose)):
        digits = amount.replace(",", "")
        places = len(digits.partition(".")[2])
        if not any(round(figure, places) == round(float(digits), places) for figure in names.figures):
            problems.append(f"${amount}: infra/cost_model.py produces no such figure (python3 "
                            "infra/cost_model.py prints them; a price goes in its PRICES, with its source)")
    return problems


def allowed_value(spec: dict[str, str], value: str) -> bool:
    if "AllowedValues" in spec:
        return value in [v.strip().strip('"') for v in spec["AllowedValues"].strip("[]").split(",")]
    low, high = spec.get("MinValue"), spec.get("MaxValue")
    return (low is None or int(value) >= int(low)) and (high is None or int(value) <= int(high))


def setting_problems(text: str, names: Known) -> list[str]:
    problems = []
    for name, value, empty in TABLE_ROW.findall(FENCE.sub("", text)):
        value = "" if empty else value
        if name in names.parameters and "Default" in names.parameters[name]:
            default = names.parameters[name]["Default"]
            if value != default:
                problems.append(f"`{name}`: the table gives the default {value or 'empty'}, the "
                                f"template's is {default or 'empty'}")
        elif name in names.tuning and value != names.tuning[name]:
            problems.append(f"`{name}`: the table gives {value}, the template's Mappings: Tuning "
                            f"{names.tuning[name]}")
    for name, value in SETTING_IN_TEXT.findall(FENCE.sub("", text)):
        if name in names.tuning and value != names.tuning[name]:
            problems.append(f"`{name}` {value}: a fixed setting, the template's Mappings: Tuning "
                            f"has {names.tuning[name]} (no parameter changes it)")
        elif name in names.parameters and not allowed_value(names.parameters[name], value):
            problems.append(f"`{name}` {value}: the template's parameter does not allow it")
    return problems


def cost_table_problems(document: str, text: str, names: Known) -> list[str]:
    if document != "docs/cost-model.md" or names.cost_tables in text:
        return []
    return ["the fleet tables differ from what `python3 infra/cost_model.py` prints: paste its output"]


def sam_problems(text: str) -> list[str]:
    problems = []
    for language, body in FENCE.findall(text):
        if language not in ("sh", "shell", "bash", "console", ""):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0]
            if not command.lstrip().startswith("#") and SAM_COMMAND.search(command):
                problems.append(f"a bare `sam` command: {line.strip()}")
    for span in INLINE.findall(FENCE.sub("", text)):
        if SAM_COMMAND.search(span) and span.strip() not in INLINE_SAM_ALLOWED:
            problems.append(f"a bare `sam` command: `{span}`")
    return problems


def name_problems(text: str, names: Known) -> list[str]:
    problems = []
    for variable in sorted(set(ENV_VAR.findall(text))):
        if variable not in names.src_text:
            problems.append(f"{variable}: no such environment variable in src/")
    for value in sorted(set(OUTCOME.findall(text))):
        if value not in names.src_strings:
            problems.append(f"outcome={value}: the code logs no such outcome")
    every = names.names()
    for span in INLINE.findall(FENCE.sub("", text)):
        if NOT_NAMES.fullmatch(span.strip()):
            continue
        for word in re.split(r"[\s=,.()\[\]/:{}<>\"'*|&;!?+-]+", span):
            if CAMEL.fullmatch(word) and word not in every:
                problems.append(f"`{span}`: {word} is no template parameter, resource, output, "
                                "condition, rule, mapping key or metric")
    return problems


LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchor(heading: str) -> str:
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", path.read_text()), re.MULTILINE):
        slug = anchor(heading)
        number = 0
        while (slug if number == 0 else f"{slug}-{number}") in found:
            number += 1
        found.add(slug if number == 0 else f"{slug}-{number}")
    return found


def link_problems(document: Path, text: str) -> list[str]:
    problems = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            problems.append(f"link to {target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            problems.append(f"link to {target}: no heading with that anchor in {linked.name}")
    return problems


def documents(repo: Path) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def main(argv: list[str]) -> int:
    repo = Path(argv[0]) if argv else Path(__file__).resolve().parents[1]
    names = known(repo)
    failures = 0
    for document in documents(repo):
        text = document.read_text()
        name = document.relative_to(repo).as_posix()
        found = (sam_problems(text) + name_problems(text, names) + link_problems(document, text)
                 + money_problems(text, names) + setting_problems(text, names)
                 + cost_table_problems(name, text, names))
        for problem in dict.fromkeys(found):
            print(f"{document.relative_to(repo)}: {problem}")
            failures += 1
    for problem in outcome_table_problems(repo):
        print(f"docs/configuration.md: {problem}")
        failures += 1
    if failures:
        print(f"check_docs: {failures} problem(s); a name that is rightly not ours goes on "
              "ALLOWED in tests/check_docs.py, with its reason")
        return 1
    print(f"check_docs: ok ({len(documents(repo))} documents)")
    return 0


def outcome_table_problems(repo: Path) -> list[str]:
    """Each `outcome = "x"` the code in src/ writes is a row of docs/configuration.md's outcome
    table (the rows under its `| outcome |` header): the one place a reader learns what a line
    means. Outcomes the code chooses at run time (upstream_rejected and the like) are held to the
    table by tests/integration/log_queries.rs, which reads the lines the function writes."""
    src_text = "\n".join(path.read_text() for path in sorted((repo / "src").rglob("*.rs")))
    written = set(re.findall(r"\boutcome\s*=\s*\"([a-z_]+)\"", src_text))
    document = repo / "docs" / "configuration.md"
    if not document.exists():
        return ["missing: it holds the outcome table"]
    lines = document.read_text().splitlines()
    header = next((i for i, line in enumerate(lines) if line.startswith("| outcome |")), None)
    if header is None:
        return ["no outcome table (a `| outcome |` header)"]
    rows = set()
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        rows.update(re.findall(r"^\| `([a-z_]+)`", line))
    return [f"outcome {value} is written in src/ but not in the outcome table"
            for value in sorted(written - rows)]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
