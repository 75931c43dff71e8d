"""The command line of infra/render_template.py and infra/lint_templates.py: several runs of one
tool in one process, each run's arguments separated by --next (the tool's start-up paid once)."""

from __future__ import annotations

from collections.abc import Sequence

SEPARATOR = "--next"


def split_runs(argv: Sequence[str]) -> list[list[str]]:
    """argv cut at each SEPARATOR: one list of arguments per run (an empty one where two
    separators meet or one ends argv)."""
    runs: list[list[str]] = [[]]
    for arg in argv:
        if arg == SEPARATOR:
            runs.append([])
        else:
            runs[-1].append(arg)
    return runs
