"""infra/lint_templates.py, the cfn-lint step of make validate, stays as strict as the command
line it replaced: a warning, an informational finding, and a finding that only a parameter set
shows each fail it, on small templates written here."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import lint_templates

# Clean: no finding at any level (the policies and the retention keep I3011 and I3013 quiet).
CLEAN = """\
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Label:
    Type: String
    Default: chunks
Resources:
  Queue:
    Type: AWS::SQS::Queue
    DeletionPolicy: Delete
    UpdateReplacePolicy: Delete
    Properties:
      VisibilityTimeout: 30
      MessageRetentionPeriod: 345600
      Tags:
        - Key: label
          Value: !Ref Label
"""
# A tag value with characters SQS refuses: W1030, a warning.
WARNING = CLEAN.replace("Default: chunks", 'Default: "fleet/{project}/#"')
# Fn::Join of literals only, where Fn::Sub would do: I1022, informational.
INFORMATIONAL = CLEAN.replace("VisibilityTimeout: 30", 'VisibilityTimeout: !Join ["", ["3", "0"]]')
# CLEAN is only wrong with this value of Label (W1030 again, "when 'Ref' is resolved to ...").
BAD_LABEL = ["--parameters", "Label=fleet/{project}/#"]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_clean_template_passes(tmp_path, capsys):
    clean = write(tmp_path, "clean.yaml", CLEAN)
    assert lint_templates.main(["--", clean, "--next", "--parameters", "Label=other", "--", clean]) == 0
    assert "2 runs, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("text, rule, severity", [
    (WARNING, "W1030", "warning"),
    (INFORMATIONAL, "I1022", "informational"),
], ids=["warning", "informational"])
def test_a_warning_or_an_informational_finding_fails(tmp_path, capsys, text, rule, severity):
    clean = write(tmp_path, "clean.yaml", CLEAN)
    bad = write(tmp_path, "bad.yaml", text)
    matches, _ = lint_templates.lint(["--", bad])
    assert {(m.rule.id, m.rule.severity) for m in matches} == {(rule, severity)}
    assert lint_templates.main(["--", clean, "--next", "--", bad]) == 1
    out = capsys.readouterr().out
    assert f"ok: cfn-lint -- {clean}" in out
    assert f"FAILED: cfn-lint -- {bad}: 1 findings" in out
    assert f"{rule} " in out and f"{bad}:" in out


def test_a_finding_of_one_parameter_set_fails_that_run_only(tmp_path, capsys):
    clean = write(tmp_path, "clean.yaml", CLEAN)
    assert lint_templates.main(["--", clean, "--next", *BAD_LABEL, "--", clean]) == 1
    out = capsys.readouterr().out
    assert f"ok: cfn-lint -- {clean}" in out
    assert f"FAILED: cfn-lint --parameters 'Label=fleet/{{project}}/#' -- {clean}: 1 findings" in out
    assert "W1030" in out and "resolved to 'fleet/{project}/#'" in out
    assert "2 runs, 1 failed" in out
    assert f"to repeat: cfn-lint {' '.join(lint_templates.CFN_LINT_ARGS)} --parameters" in out


def test_findings_are_the_commands(tmp_path):
    """The same arguments through the cfn-lint command: the same findings, the same text, and
    the command fails on them too."""
    clean = write(tmp_path, "clean.yaml", CLEAN)
    args = [*BAD_LABEL, "--", clean]
    command = subprocess.run(["cfn-lint", *lint_templates.CFN_LINT_ARGS, *args],
                             capture_output=True, text=True, check=False)
    matches, text = lint_templates.lint(args)
    assert command.returncode != 0 and matches
    assert command.stdout.strip() == text.strip()


def test_cfn_lint_still_drops_parameters_on_a_sam_template(tmp_path):
    """make validate lints template.yaml once, not once per parameter set, because cfn-lint
    1.58 drops --parameters on a template with the SAM transform: with the transform, the
    parameter set that fails CLEAN above finds nothing. When a cfn-lint release honours them,
    this fails: lint template.yaml with each parameter set again (infra/validate.sh)."""
    plain = write(tmp_path, "plain.yaml", CLEAN)
    sam = write(tmp_path, "sam.yaml", CLEAN.replace(
        'AWSTemplateFormatVersion: "2010-09-09"\n',
        'AWSTemplateFormatVersion: "2010-09-09"\nTransform: AWS::Serverless-2016-10-31\n'))
    assert lint_templates.lint([*BAD_LABEL, "--", plain])[0]
    assert lint_templates.lint([*BAD_LABEL, "--", sam])[0] == []
