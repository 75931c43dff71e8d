"""infra/sam_deploy.py (`make deploy`, `make deploy-guided`): how PARAMS, CONFIG_ENV and
samconfig.toml become one `sam deploy` command, and what is refused before SAM runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import sam_deploy
from sam_deploy import Refused

REPO = Path(__file__).resolve().parents[2]
# Chosen at a stack's first deploy: pinned in samconfig.toml, they would be sent again by every
# `make deploy`, whatever the stack was created with (a MemfaultGuide stack updated to Legacy).
FIRST_DEPLOY_CHOICES = {"Mode", "TopicLayout", "TopicPattern", "ProjectKeys", "MemfaultProjectKey",
                        "BasicIngest", "CreateTopicRule", "TopicRuleName",
                        "DeviceSerialFromClientId", "Architecture"}


@pytest.mark.parametrize("config_env", ["default", "dev", "prod"])
def test_no_environment_pins_a_first_deploy_choice(config_env: str) -> None:
    saved = sam_deploy.saved_overrides(REPO / "samconfig.toml", config_env)
    assert saved is not None, f"samconfig.toml has no {config_env} environment"
    assert not FIRST_DEPLOY_CHOICES & set(saved), saved


def test_each_environment_is_its_own_stack() -> None:
    import tomllib
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    stacks = {env: config[env]["global"]["parameters"]["stack_name"] for env in ("default", "dev", "prod")}
    assert len(set(stacks.values())) == 3, stacks
    for env in stacks:
        assert config[env]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"


def test_params_go_over_the_saved_answers_and_the_build_decides_the_architecture() -> None:
    saved = {"Mode": "Queued", "LogLevel": "DEBUG", "Architecture": "arm64"}
    merged = sam_deploy.merged(saved, {"LogLevel": "INFO", "AlarmEmail": "a@b.c"}, "arm64", "dev")
    assert merged == {"Mode": "Queued", "LogLevel": "INFO", "Architecture": "arm64",
                      "AlarmEmail": "a@b.c"}
    assert sam_deploy.merged({}, {}, "x86_64", "dev") == {"Architecture": "x86_64"}


def test_an_architecture_that_disagrees_with_the_build_is_refused() -> None:
    with pytest.raises(Refused, match="deploys Architecture=x86_64, not arm64"):
        sam_deploy.merged({"Architecture": "x86_64"}, {}, "arm64", "default")
    with pytest.raises(Refused, match="PARAMS says Architecture=x86_64"):
        sam_deploy.merged({}, {"Architecture": "x86_64"}, "arm64", "default")


def test_a_word_that_is_not_name_value_is_refused() -> None:
    with pytest.raises(Refused, match="'Mode' is not Name=Value"):
        sam_deploy.parse_pairs(["Mode"], "PARAMS")
    assert sam_deploy.parse_pairs(["ProjectKeys=a=k1,b=k2"], "PARAMS") == {"ProjectKeys": "a=k1,b=k2"}


def test_empty_and_spaced_values_are_quoted_as_sam_reads_them() -> None:
    words = sam_deploy.command("deploy", "arm64", "dev", {"AlarmEmail": "", "Mode": "Stream",
                                                          "TopicPattern": "a b/{device_serial}"})
    assert words[-3:] == ['AlarmEmail=""', "Mode=Stream", 'TopicPattern="a b/{device_serial}"']
    assert words[words.index("--config-env") + 1] == "dev"
    assert "--guided" in sam_deploy.command("guided", "arm64", "dev", {})


def test_the_guided_answers_are_read_in_either_form(tmp_path: Path) -> None:
    config = tmp_path / "samconfig.toml"
    config.write_text('version = 0.1\n[dev.deploy.parameters]\n'
                      'parameter_overrides = "Architecture=\\"x86_64\\" AlarmEmail=\\"\\""\n')
    assert sam_deploy.saved_overrides(config, "dev") == {"Architecture": "x86_64", "AlarmEmail": ""}
    assert sam_deploy.deployed_architecture(config, "dev") == "x86_64"
    assert sam_deploy.saved_overrides(config, "version") is None
    assert sam_deploy.saved_overrides(config, "prod") is None


def test_the_printed_command_shortens_the_project_keys() -> None:
    secret = sam_deploy.secret_parameters(REPO / "template.yaml")
    assert secret == {"MemfaultProjectKey", "ProjectKeys"}
    words = sam_deploy.command("deploy", "arm64", "default",
                               {"ProjectKeys": "a=abcdefgh123,b=zzzz", "Mode": "Direct"})
    shown = sam_deploy.shown(words, secret)
    assert "abcdefgh123" not in shown and "ProjectKeys=a=ab…" in shown and "Mode=Direct" in shown


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "infra" / "sam_deploy.py"), "deploy"],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": "/nonexistent", **env})


def test_refusals_happen_before_sam_runs() -> None:
    done = run({"CONFIG_ENV": "staging"})
    assert done.returncode == 1
    assert "no environment 'staging' (it has: default, dev, prod)" in done.stderr
    assert "make deploy-guided CONFIG_ENV=staging" in done.stderr
    done = run({"PARAMS": "Mode Stream"})
    assert done.returncode == 1 and "'Mode' is not Name=Value" in done.stderr


@pytest.mark.parametrize("config_env", ["default", "dev", "prod"])
def test_samconfig_overrides_are_valid_parameter_values(raw, config_env: str) -> None:
    import tomllib
    config = tomllib.loads((REPO / "samconfig.toml").read_text())
    overrides = dict(sam_deploy.saved_overrides(REPO / "samconfig.toml", config_env) or {})
    build = config[config_env].get("build", {}).get("parameters", {})
    overrides.update(sam_deploy.parse_pairs(build.get("parameter_overrides", []), "build"))
    for name, value in overrides.items():
        spec = raw["Parameters"][name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
