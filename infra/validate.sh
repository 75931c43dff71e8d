#!/usr/bin/env bash
# Offline checks of template.yaml; fails if any of them fails:
#   - cfn-lint, with warnings and informational findings counted as failures, on the
#     template as written (all Conditions; every cfn-lint run of this script in one process:
#     infra/lint_templates.py);
#   - the SAM transform, run offline as CloudFormation runs it at deploy time, and
#     cfn-lint on the plain CloudFormation it produces;
#   - sam validate --lint;
#   - cfn-lint on the release's packaged templates (infra/package_template.py);
#   - checkov on the template, on the variants (checkov only evaluates Conditions with
#     the parameters' defaults) and on the transformed templates;
#   - pytest infra/ (assertions on the template's contents).
# The template checks (all but pytest) are skipped when what they read is unchanged since
# they last passed: template.yaml, infra/ but its tests (the renderers, this script, the
# pinned tools) and Python's version; CI=true or RERUN=1 runs them.
# Works from any directory. Sets up .venv at the repository root (infra/venv.sh) when it
# is missing or the requirements changed (needs PyPI then); uses no other network. Needs
# python3 (3.11); PYTHON=... picks another.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=infra/venv.sh
source infra/venv.sh
# shellcheck disable=SC2119 # no arguments: the default requirements files
infra_venv

export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT

# Parameter sets beyond the defaults (Direct mode, topic rule, no device policy).
queued=(Mode=Queued DeviceSerialFromClientId=true CreateDevicePolicy=true
  ReplayFailedChunks=true MemfaultProjectKey=example-project-key)
own_rule=(CreateTopicRule=false)
own_rule_queued=(CreateTopicRule=false Mode=Queued)
stream=(Mode=Stream)
stream_provisioned=(Mode=Stream StreamShardCount=2
  DeviceSerialFromClientId=true BasicIngest=true CreateDevicePolicy=true ReplayFailedChunks=true
  AlarmEmail=on-call@example.com)
own_rule_stream=(CreateTopicRule=false Mode=Stream BasicIngest=true)
existing_topic=(Mode=Queued AlarmTopicArn=arn:aws:sns:us-east-1:123456789012:on-call)
no_monitoring=(CreateAlarms=false CreateDashboard=false MetricsNamespace=)
# The edges of the template's Rules, each just on the side that works (pytest infra checks that
# one step further is refused): the least record age, the longest (the stream's retention), the
# largest SQS batch without a batching window, and no metrics with the alarms off (above).
stream_record_age_edges=(Mode=Stream StreamMaxRecordAgeSeconds=60)
stream_record_age_retention=(Mode=Stream StreamMaxRecordAgeSeconds=86400 StreamShardCount=1)
queued_no_window=(Mode=Queued SqsBatchSize=10 SqsMaxBatchingWindowSeconds=0)
# shellcheck disable=SC2054 # the commas separate ProjectKeys' entries, not array elements
guide=(TopicLayout=MemfaultGuide ProjectKeys=project-a=example-key-a,project-b=example-key-b
  Mode=Stream BasicIngest=true CreateDevicePolicy=true DeviceSerialFromClientId=true)
custom_layout=(TopicLayout=Custom "TopicPattern=fleet/{project_slug}/devices/{device_serial}/#"
  ProjectKeys=project-a=example-key-a Mode=Stream CreateDevicePolicy=true)

checks_stamp=target/phases/validate-template-checks.stamp
checks_key="$( {
  git ls-files -z --cached --others --exclude-standard -- template.yaml infra \
    ':(exclude)infra/test_*.py' ':(exclude)infra/conftest.py' | sort -z | xargs -0 sha256sum
  python --version
} | sha256sum | cut -d' ' -f1)"
checks_unchanged=false
if [[ "${CI:-}" != true && "${RERUN:-}" != 1 && "$(cat "$checks_stamp" 2>/dev/null)" == "$checks_key" ]] &&
  git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  checks_unchanged=true
  echo "==> The template checks are skipped: template.yaml, infra/ and the tools are unchanged since they passed ($(date -r "$checks_stamp" '+%F %T')); RERUN=1 runs them"
fi

passed=0
skipped=0
failed=()
# step [--always] NAME COMMAND...: runs a step (--always: even when the template checks are
# skipped), and prints its output and its result line.
step() {
  beside "$@"
  collect
}

# measured RECORD COMMAND...: runs COMMAND, then writes the CPU seconds of the processes it ran
# to RECORD.cpu (bash's `times`, second line: children's user and system) and the time it ended
# to RECORD.end. Run in a subshell of its own, so that it counts that command's processes only,
# which say where the time goes better than wall time when other work shares the machine.
measured() {
  local record="$1" status=0 line
  shift
  "$@" || status=$?
  echo "$SECONDS" >"$record.end"
  times >"$record.times"
  { read -r line && read -r line; } <"$record.times"
  if [[ "$line" =~ ^([0-9]+)m([0-9]+)[.,][0-9]*s\ ([0-9]+)m([0-9]+)[.,][0-9]*s ]]; then
    echo $((BASH_REMATCH[1] * 60 + 10#${BASH_REMATCH[2]} + BASH_REMATCH[3] * 60 + 10#${BASH_REMATCH[4]})) >"$record.cpu"
  fi
  return "$status"
}

# report NAME STATUS SECONDS RECORD: a step's result line, and the counts.
report() {
  if (($2 == 0)); then
    printf -- '--> ok: %s' "$1"
    passed=$((passed + 1))
  else
    printf -- '--> FAILED: %s' "$1"
    failed+=("$1")
  fi
  printf ' (%d s, %s CPU s)\n' "$3" "$(cat "$4.cpu" 2>/dev/null || echo '?')"
}

checkov_report_ok() {
  # checkov exits 0 on files it cannot parse: require every file to be parsed and checked.
  # The skips are summarised, not printed: each one's reason is the `comment` beside its id
  # under the resource's Metadata.checkov.skip in template.yaml.
  python - "$1" "${@:2}" <<'EOF'
import collections, json, sys
report = json.load(open(sys.argv[1]))
results = report["results"]
summary = report["summary"]
checked = {r["file_path"].rsplit("/", 1)[-1]
           for kind in ("passed_checks", "failed_checks", "skipped_checks")
           for r in results[kind]}
missing = [f for f in sys.argv[2:] if f.rsplit("/", 1)[-1] not in checked]
problems = []
if summary["parsing_errors"]:
    problems.append(f"parsing errors: {results['parsing_errors']}")
for failed in results["failed_checks"]:
    print(f"FAILED {failed['check_id']} {failed['check_name']}: {failed['resource']} in "
          f"{failed['file_path'].rsplit('/', 1)[-1]} ({failed.get('guideline') or 'no guideline'})")
if summary["failed"]:
    problems.append(f"{summary['failed']} failed checks (above)")
if missing:
    problems.append(f"no checks ran on {missing}")
skipped = collections.Counter(r["check_id"] for r in results["skipped_checks"])
print(f"checkov: {summary['passed']} passed, {summary['failed']} failed, "
      f"{summary['skipped']} skipped, over {len(sys.argv) - 2} templates")
if skipped:
    print(f"checkov: the {summary['skipped']} skips are {len(skipped)} checks, each with its reason "
          "in template.yaml (Metadata: checkov: skip: comment, on the resource): "
          + ", ".join(f"{check} x{count}" for check, count in sorted(skipped.items())))
for p in problems:
    print(f"checkov: {p}")
sys.exit(1 if problems else 0)
EOF
}

run_checkov() {
  local args=() status=0
  for f in "$@"; do args+=(-f "$f"); done
  # Both reports to files: the console report would repeat every skip in full; the summary
  # below prints the failed checks and counts the rest from the JSON report.
  checkov --framework cloudformation --skip-download --compact "${args[@]}" \
    -o cli -o json --output-file-path "$work/checkov.txt,$work/checkov.json" >/dev/null || status=$?
  checkov_report_ok "$work/checkov.json" "$@" || status=1
  return "$status"
}

# One process writes every variant (--next separates them): it imports samtranslator once.
render_variants() {
  python infra/render_template.py \
    "$work/direct.cfn.json" --sam-transform \
    --next "$work/queued.sam.json" "${queued[@]}" \
    --next "$work/queued.cfn.json" --sam-transform "${queued[@]}" \
    --next "$work/own-rule.cfn.json" --sam-transform "${own_rule_queued[@]}" \
    --next "$work/stream.sam.json" "${stream[@]}" \
    --next "$work/stream.cfn.json" --sam-transform "${stream[@]}" \
    --next "$work/stream-provisioned.sam.json" "${stream_provisioned[@]}" \
    --next "$work/stream-provisioned.cfn.json" --sam-transform "${stream_provisioned[@]}" \
    --next "$work/own-rule-stream.cfn.json" --sam-transform "${own_rule_stream[@]}" \
    --next "$work/existing-topic.cfn.json" --sam-transform "${existing_topic[@]}" \
    --next "$work/no-monitoring.cfn.json" --sam-transform "${no_monitoring[@]}" \
    --next "$work/guide.sam.json" "${guide[@]}" \
    --next "$work/guide.cfn.json" --sam-transform "${guide[@]}" \
    --next "$work/custom-layout.cfn.json" --sam-transform "${custom_layout[@]}" \
    --next "$work/stream-record-age-edges.cfn.json" --sam-transform "${stream_record_age_edges[@]}" \
    --next "$work/stream-record-age-retention.cfn.json" --sam-transform "${stream_record_age_retention[@]}" \
    --next "$work/queued-no-window.cfn.json" --sam-transform "${queued_no_window[@]}"
}

# The release's packaged templates (infra/package_template.py): code from bucket/key parameters,
# and the Serverless Application Repository's, with code at a fixed location.
package_templates() {
  python infra/package_template.py "$work/release.package.json" --version 0.0.0 &&
    python infra/package_template.py "$work/sar.package.json" --version 0.0.0 --architecture arm64 \
      --code-uri s3://example-artifacts-bucket/memfault-chunk-proxy-0.0.0-arm64.zip
}

# The cfn-lint runs, each as strict as `cfn-lint --include-checks I --non-zero-exit-code
# informational --regions ...` (infra/lint_templates.py; infra/test_lint_templates.py holds it
# to that), several in a process that starts cfn-lint and loads its rules and schemas once:
# template.yaml with all Conditions and the packaged templates in one, the transformed templates
# (each parameter set's values, as the parameters' defaults) in two halves beside it, so that
# the longest check is not one process the other core waits for. --next separates the runs.
# template.yaml is not linted once per parameter set: cfn-lint 1.58 drops --parameters on a
# template with the SAM transform (its transform rebuilds the template's context without them),
# so such a run finds exactly what the first run finds. infra/test_lint_templates.py fails the
# day a cfn-lint release honours them, so that the runs come back then.
lint_template_and_packages() {
  python infra/lint_templates.py -- template.yaml --next -- "$work"/*.package.json
}
# lint_transformed_half 0|1: the first or the second half of the transformed templates.
lint_transformed_half() {
  local transformed=("$work"/*.cfn.json)
  local half=$(((${#transformed[@]} + 1) / 2))
  if (($1 == 0)); then
    python infra/lint_templates.py -- "${transformed[@]:0:half}"
  else
    python infra/lint_templates.py -- "${transformed[@]:half}"
  fi
}

# The installed versions, read from the packages' metadata: `checkov --version` alone imports
# all of checkov (about 3 CPU seconds).
$checks_unchanged || python -c 'from importlib.metadata import version
print("==> Tools: " + ", ".join(f"{name} {version(name)}"
                                 for name in ("cfn-lint", "aws-sam-cli", "checkov", "pytest")))'

# The checks below need only the rendered templates and not each other: they run side by side
# (each single-threaded Python), so that this script keeps the cores busy when the machine has
# them free; each one's output and its own seconds are printed at its step, in order.
# beside [--always] NAME COMMAND...: starts a step in the background (--always: as in step).
steps_started=0
pending=()
declare -A step_names=() step_commands=() step_pids=() step_started=()
beside() {
  local always=false
  [[ "$1" == --always ]] && { always=true; shift; }
  if $checks_unchanged && ! $always; then
    skipped=$((skipped + 1))
    return
  fi
  local n=$steps_started
  steps_started=$((n + 1))
  step_names[$n]="$1"
  shift
  step_commands[$n]="$*"
  step_started[$n]=$SECONDS
  (measured "$work/step-$n" "$@") >"$work/step-$n.out" 2>&1 &
  step_pids[$n]=$!
  pending+=("$n")
}
# Waits for the steps started and not yet collected, and prints each one's output and result, in
# the order they were started.
collect() {
  local n status
  for n in "${pending[@]}"; do
    status=0
    wait "${step_pids[$n]}" || status=$?
    printf '\n==> %s\n$ %s\n' "${step_names[$n]}" "${step_commands[$n]}"
    cat "$work/step-$n.out"
    report "${step_names[$n]}" "$status" \
      $(($(cat "$work/step-$n.end" 2>/dev/null || echo "$SECONDS") - step_started[$n])) "$work/step-$n"
  done
  pending=()
}

step "SAM transform, offline, of each variant" render_variants
step "packaged release templates" package_templates
beside "cfn-lint: template.yaml (all conditions), packaged templates" lint_template_and_packages
beside "cfn-lint: transformed templates, first half" lint_transformed_half 0
beside "cfn-lint: transformed templates, second half" lint_transformed_half 1
beside "checkov" run_checkov template.yaml "$work"/*.sam.json "$work"/*.cfn.json
beside "sam validate --lint" sam validate --lint --template-file template.yaml
beside --always "pytest infra" python -m pytest -p no:cacheprovider infra
collect

echo
if ((${#failed[@]})); then
  printf 'Failed: %s\n' "${failed[@]}"
fi
echo "infra-validate: $passed passed, ${#failed[@]} failed$( ((skipped)) && echo ", $skipped skipped")"
((${#failed[@]} == 0)) || exit 1
if ! $checks_unchanged; then
  mkdir -p "$(dirname "$checks_stamp")"
  echo "$checks_key" >"$checks_stamp"
fi
