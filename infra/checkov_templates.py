"""checkov on templates, failing on what the command lets pass: it exits 0 on a file it cannot
parse, so every file must show up in the report with checks run on it. The skips are summarised,
not printed: each one's reason is the `comment` beside its id under the resource's
Metadata.checkov.skip in template.yaml.

    python infra/checkov_templates.py TEMPLATE ...
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main(files: list[str]) -> int:
    with tempfile.TemporaryDirectory() as work:
        report_path = Path(work) / "results_json.json"
        subprocess.run(["checkov", "--framework", "cloudformation", "--skip-download", "--compact",
                        *(arg for f in files for arg in ("-f", f)), "-o", "json",
                        "--output-file-path", work], stdout=subprocess.DEVNULL, check=False,
                       env={**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true"})
        report = json.loads(report_path.read_text())
    results, summary = report["results"], report["summary"]
    checked = {Path(r["file_path"]).name
               for kind in ("passed_checks", "failed_checks", "skipped_checks") for r in results[kind]}
    problems = []
    if summary["parsing_errors"]:
        problems.append(f"parsing errors: {results['parsing_errors']}")
    for failed in results["failed_checks"]:
        print(f"FAILED {failed['check_id']} {failed['check_name']}: {failed['resource']} in "
              f"{Path(failed['file_path']).name} ({failed.get('guideline') or 'no guideline'})")
    if summary["failed"]:
        problems.append(f"{summary['failed']} failed checks (above)")
    missing = [f for f in files if Path(f).name not in checked]
    if missing:
        problems.append(f"no checks ran on {missing}")
    skipped = collections.Counter(r["check_id"] for r in results["skipped_checks"])
    print(f"checkov: {summary['passed']} passed, {summary['failed']} failed, "
          f"{summary['skipped']} skipped, over {len(files)} templates")
    if skipped:
        print(f"checkov: the skips are {len(skipped)} checks, each with its reason in template.yaml "
              "(Metadata: checkov: skip: comment, on the resource): "
              + ", ".join(f"{check} x{count}" for check, count in sorted(skipped.items())))
    for problem in problems:
        print(f"checkov: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
