"""cfn-lint, several runs in one Python process: each run as strict as the command line
`cfn-lint --include-checks I --non-zero-exit-code informational --regions ...`, without paying
cfn-lint's start-up (about a second) and its schema loading again for every run.

    python infra/lint_templates.py [CFN-LINT ARGS] [--next CFN-LINT ARGS]...

Each run's arguments are cfn-lint's own, after CFN_LINT_ARGS (below), e.g.
`-- template.yaml --next --parameters Mode=Queued -- template.yaml --next -- a.json b.json`.
They go through cfn-lint's argument parsing (cfnlint.config.ConfigMixIn, which also reads a
.cfnlintrc as the command does) and its Runner, as the command's do. Every finding of a run is
printed as the command prints it, under the run's arguments; any finding, error, warning or
informational, fails the run, and a failed run fails the whole (exit status 1), after all runs,
with the command that repeats each failed run.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence

from cfnlint.config import ConfigMixIn, configure_logging
from cfnlint.formatters import Formatter
from cfnlint.rules import Match, Rules
from cfnlint.runner import Runner

from runs import SEPARATOR, split_runs

REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-northeast-1"]
# With --non-zero-exit-code informational the command fails on any finding of the rules it
# runs; lint() returns every finding, and main() fails on any.
CFN_LINT_ARGS = ["--include-checks", "I", "--non-zero-exit-code", "informational",
                 "--regions", *REGIONS]


class _Runner(Runner):
    """cfn-lint's Runner, with each rule collection built once per process (about 0.6 CPU s
    each time): a collection depends only on the rule options (--append-rules,
    --custom-rules), and cfn-lint itself runs one collection over several templates and over
    the configurations of several parameter files."""

    _shared_rules: dict[tuple[tuple[str, ...], str | None], Rules] = {}

    def _get_rules(self) -> None:
        key = (tuple(self.config.append_rules), self.config.custom_rules)
        if key not in self._shared_rules:
            super()._get_rules()
            self._shared_rules[key] = self.rules
        self.rules = self._shared_rules[key]


def lint(run_args: Sequence[str]) -> tuple[list[Match], str]:
    """The findings of `cfn-lint CFN_LINT_ARGS RUN_ARGS`, and their text as the command prints
    it (empty with none)."""
    config = ConfigMixIn([*CFN_LINT_ARGS, *run_args])
    # What the command checks before it lints: a template is given and the options agree.
    try:
        config.validate()
    except ValueError as error:
        raise SystemExit(f"cfn-lint {shlex.join(run_args)}: configuration error: {error}") from None
    runner = _Runner(config)
    matches = list(runner.run())
    matches.sort(key=lambda m: (m.filename, m.linenumber, m.rule.id))
    return matches, Formatter().print_matches(matches, runner.rules, config=config) or ""


def main(argv: Sequence[str]) -> int:
    runs = split_runs(argv)
    if not all(runs):
        print(f"lint_templates.py: an empty run (two {SEPARATOR} in a row, or one at an end)",
              file=sys.stderr)
        return 2
    configure_logging(False, False)
    failed = []
    for run_args in runs:
        started = time.process_time()
        matches, text = lint(run_args)
        seconds = time.process_time() - started
        name = shlex.join(run_args)
        if matches:
            failed.append(run_args)
            print(f"FAILED: cfn-lint {name}: {len(matches)} findings ({seconds:.1f} CPU s)")
            print(text.rstrip("\n"))
        else:
            print(f"ok: cfn-lint {name} ({seconds:.1f} CPU s)")
    print(f"cfn-lint: {len(runs)} runs, {len(failed)} failed "
          "(warnings and informational findings fail too)")
    for run_args in failed:
        print(f"  to repeat: cfn-lint {shlex.join([*CFN_LINT_ARGS, *run_args])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
