"""tests/check_docs.py: names in the docs that the code or template do not have are found."""

from __future__ import annotations

from pathlib import Path

import pytest

import check_docs
from template_model import load_raw

REPO = Path(__file__).resolve().parents[2]


def repo_with(tmp_path: Path, readme: str) -> Path:
    """A repository with the real template and code, and a README of the test's."""
    for name in ("template.yaml",):
        (tmp_path / name).write_text((REPO / name).read_text())
    for folder in ("src", "tests", "examples", "benches", "infra"):
        (tmp_path / folder).symlink_to(REPO / folder)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(readme)
    return tmp_path


def problems(tmp_path: Path, readme: str) -> list[str]:
    repo = repo_with(tmp_path, readme)
    names = check_docs.known(repo)
    return check_docs.sam_problems(readme) + check_docs.name_problems(readme, names)


def test_the_repositorys_docs_pass() -> None:
    assert check_docs.main([str(REPO)]) == 0


def test_names_that_exist_pass(tmp_path: Path) -> None:
    readme = ("Set `MEMFAULT_TOPIC_PATTERN`; `TopicLayout=MemfaultGuide` with `ProjectKeys`; the\n"
              "`QuarantineQueue` resource, its `QuarantineQueueUrl` output, the `ChunksQuarantined`\n"
              "metric, `IteratorAge` and `AWS::CloudFormation::Interface`; a line with outcome=\"delivered\" or `outcome = \"refused\"`.\n"
              "```sh\nmake deploy PARAMS=\"Mode=Stream\"\n```\n")
    assert problems(tmp_path, readme) == []


@pytest.mark.parametrize("text, found", [
    ("the `MEMFAULT_FAILURE_QUEUE_URLS` variable", "MEMFAULT_FAILURE_QUEUE_URLS: no such"),
    ("MEMFAULT_NO_SUCH_SETTING=1 make local", "MEMFAULT_NO_SUCH_SETTING: no such"),
    ("logs outcome=\"exploded\"", "outcome=exploded: the code logs no such outcome"),
    ("a query `filter outcome = \"upstream_gone\"`", "outcome=upstream_gone"),
    ("the `NoSuchQueueUrl` output", "NoSuchQueueUrl is no template"),
    ("give `StreamCapacityModes=PROVISIONED`", "StreamCapacityModes is no template"),
    ("```sh\nsam deploy --parameter-overrides Mode=Stream\n```\n", "a bare `sam` command"),
    ("```sh\nmake sam-build && sam deploy --guided\n```\n", "a bare `sam` command"),
    ("run `sam deploy --parameter-overrides Mode=Queued` once", "a bare `sam` command"),
])
def test_names_and_commands_that_drift_are_found(tmp_path: Path, text: str, found: str) -> None:
    assert any(found in problem for problem in problems(tmp_path, text)), problems(tmp_path, text)


def test_named_checks_and_comments_are_not_commands(tmp_path: Path) -> None:
    readme = ("`make validate` runs `sam validate --lint`.\n"
              "```sh\nmake deploy   # afterwards: build + sam deploy with the saved answers\n```\n")
    assert problems(tmp_path, readme) == []


def test_the_main_exit_status_follows_the_problems(tmp_path: Path, capsys) -> None:
    repo = repo_with(tmp_path, "the `NoSuchThing` resource\n")
    assert check_docs.main([str(repo)]) == 1
    assert "README.md: `NoSuchThing`" in capsys.readouterr().out


def test_the_text_reading_of_the_template_is_cfn_lints() -> None:
    raw = load_raw()
    names, metrics = check_docs.template_names((REPO / "template.yaml").read_text())
    wanted = set()
    for section in ("Parameters", "Resources", "Outputs", "Conditions", "Rules"):
        wanted |= set(raw.get(section, {}))
    for mapping, tops in raw.get("Mappings", {}).items():
        wanted.add(mapping)
        for top, seconds in tops.items():
            wanted |= {top, *seconds}
    assert names == wanted
    found_metrics = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("MetricName"), str):
                found_metrics.add(node["MetricName"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(raw["Resources"])
    assert metrics == found_metrics


def test_every_allowed_name_has_a_reason_and_is_not_ours() -> None:
    names = check_docs.known(REPO)
    for name, reason in check_docs.ALLOWED.items():
        assert reason.strip(), name
        assert name not in names.template, f"{name} is the template's: no need to allow it"


def test_links_and_anchors_are_followed(tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "")
    (repo / "docs" / "deploy.md").write_text("# Deploy\n\n## Deploy with SAM\n\n## Topic `layouts`, and more\n")
    readme = ("[ok](docs/deploy.md#deploy-with-sam) [ok](docs/deploy.md#topic-layouts-and-more) "
              "[web](https://example.com/x#y) [gone](docs/recipes.md) "
              "[anchor](docs/deploy.md#the-failure-queue)\n")
    found = check_docs.link_problems(repo / "README.md", readme)
    assert found == ["link to docs/recipes.md: no such file",
                     "link to docs/deploy.md#the-failure-queue: no heading with that anchor in deploy.md"]


def test_an_outcome_the_code_writes_is_in_the_configuration_docs_table(tmp_path: Path) -> None:
    assert check_docs.outcome_table_problems(REPO) == []
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "lib.rs").write_text(
        'tracing::warn!(outcome = "refused", "x");\ntracing::warn!(outcome = "exploded", "y");\n')
    (tmp_path / "docs").mkdir()
    table = "| outcome | level |\n|---|---|\n| `refused` | WARN |\n\nLater: `exploded` in prose.\n"
    (tmp_path / "docs" / "configuration.md").write_text(table)
    assert check_docs.outcome_table_problems(tmp_path) == [
        "outcome exploded is written in src/ but not in the outcome table"]


# The drift of issue #28, planted: a price the cost model does not produce, sizes and defaults the
# template does not have, a cost table that is not the model's output.
def drift(tmp_path: Path, document: str, text: str) -> list[str]:
    if not (tmp_path / "template.yaml").exists():
        repo_with(tmp_path, "")
    names = check_docs.known(tmp_path)
    return (check_docs.money_problems(text, names) + check_docs.setting_problems(text, names)
            + check_docs.cost_table_problems(document, text, names))


def test_figures_the_model_produces_pass(tmp_path: Path) -> None:
    text = ("Stream mode: $0.418 per million on the default on-demand stream, $0.322 with 20\n"
            "provisioned shards ($13,896 a month); SQS $0.40 per million requests; $0.14 in logs;\n"
            "`UploadConcurrency` 64, `StreamBatchSize` 500, `SqsBatchSize` of 10, `StreamShardCount=20`.\n"
            "| `StreamShardCount` | `0` | on demand |\n| `TopicPattern` | empty | |\n"
            "| `UploadConcurrency` | `64` | |\n")
    assert drift(tmp_path, "README.md", text) == []


@pytest.mark.parametrize("text, found", [
    ("the cheapest at scale: $0.32 per million", None),  # produced (provisioned): passes
    ("stream mode comes to $0.64 per million ($46 a month)", "$0.64: infra/cost_model.py produces no such figure"),
    ("Pipes cost $0.55 per million requests", "$0.55: infra/cost_model.py produces no such figure"),
    ("sized with `UploadConcurrency` 32", "`UploadConcurrency` 32: a fixed setting"),
    ("`UploadConcurrency` of 8 otherwise", "`UploadConcurrency` 8: a fixed setting"),
    ("| `StreamShardCount` | `20` | shards |", "`StreamShardCount`: the table gives the default 20"),
    ("| `DeviceSerialTopicLevel` | `3` | level |", "`DeviceSerialTopicLevel`: the table gives the default 3"),
    ("| `UploadConcurrency` | `32` | |", "`UploadConcurrency`: the table gives 32"),
    ("`SqsBatchSize` 20000 per batch", "`SqsBatchSize` 20000: the template's parameter does not allow it"),
    ("`LogLevel=VERBOSE`", None),  # not a number: the name check's business
])
def test_prices_sizes_and_defaults_that_drift_are_found(tmp_path: Path, text: str, found: str | None) -> None:
    problems = drift(tmp_path, "README.md", text)
    if found is None:
        assert problems == []
    else:
        assert any(found in problem for problem in problems), problems


def test_a_cost_table_that_is_not_the_models_output_is_found(tmp_path: Path) -> None:
    page = (REPO / "docs" / "cost-model.md").read_text()
    assert drift(tmp_path, "docs/cost-model.md", page) == []
    planted = page.replace("**$0.418**", "**$0.418**".replace("418", "400"), 1)
    assert planted != page
    problems = drift(tmp_path, "docs/cost-model.md", planted)
    assert any("the fleet tables differ" in problem for problem in problems), problems
