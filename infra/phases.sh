#!/usr/bin/env bash
# `make test`: runs the phases below (each a make target), at most TEST_JOBS at once, each when
# the phases it needs have passed; keeps each phase's output in target/phases/NAME.log and prints
# the logs whole, in the table's order; ends with how long each phase took and the wall time.
#
#   bash infra/phases.sh            every phase of the table
#   bash infra/phases.sh NAME ...   only those (with what they need)
#
# A phase that passed is skipped the next time while its inputs are unchanged: the content of the
# files under its input paths (tracked or new, as git lists them), of the Makefile and of this
# script, and the tool versions below. Cargo already rebuilds only what changed; the skips spare
# the slow Python checks and the scenarios. CI=true, or RERUN=1, runs every phase.
#
# Adding a phase: one line in PHASES: its make target, the phases it needs ("-" for none: it
# starts at once), its CPU priority, and its input paths ("-": it runs every time). The Rust build
# happens in `lint` (clippy lints while the test build compiles; see the Makefile), so what runs
# the function binary or cargo needs lint; `@rust` stands for the Rust sources. Among phases ready
# at once the first in the table starts first.
#
# Priority: the machine has fewer cores than phases that could run, and the wall time is set by
# the longest chain, the Rust build and then the scenarios of esm (which mostly wait on their
# clocks, and whose timings a starved simulator would distort). So that chain runs at normal
# priority, and the phases that only need CPU time, whenever it comes (the template checks and
# the deploy commands, single-threaded Python), run at `background` priority (nice 19): they take
# whatever the build and the tests leave, and the cores are never idle while one of them waits.
# Nice 19, not less: Linux shares a core by weight, and at nice 10 the checks' five processes
# together weigh about a fifth of what the build's two do, a share they take from the build even
# when it could use both cores (lint took 148 to 179 s at nice 10, 121 to 164 s at nice 19).
set -uo pipefail

PHASES='
lint         -      normal      -
validate     -      background  template.yaml samconfig.toml infra events docs README.md CHANGELOG.md @rust
deploy-path  -      background  samconfig.toml template.yaml LICENSE README.md docs infra
esm          lint   normal      @rust tests/esm infra/requirements.txt infra/requirements-moto.txt
unit         lint   normal      @rust
emulator     lint   normal      @rust tests/emulator events infra/requirements-lambda.txt infra/install-cargo-lambda.sh
wire         lint   normal      @rust tests/memfault_cli_framing.py infra/requirements-wire.txt
watch-invoke lint   normal      @rust infra/watch.sh infra/watch_invoke.py tests/emulator/expectations.py events infra/requirements-lambda.txt
'
RUST_INPUTS='src tests/integration tests/proptest-regressions benches examples Cargo.toml Cargo.lock build.rs'

jobs="${TEST_JOBS:-4}"
state="${PHASES_DIR:-target/phases}"
rerun=false
[[ "${CI:-}" == true || "${RERUN:-}" == 1 ]] && rerun=true
# The inputs are listed by git: outside a git work tree nothing is skipped.
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || rerun=true

declare -A needs=() priority=() inputs=()
order=()
while read -r name after cpu_priority paths; do
  [[ -n "$name" ]] || continue
  order+=("$name")
  needs[$name]="${after//,/ }"
  priority[$name]="$cpu_priority"
  inputs[$name]="${paths//@rust/$RUST_INPUTS}"
done <<<"$PHASES"

# The phases asked for, with the ones they need, in the table's order.
declare -A wanted=()
want() {
  local p="$1" n
  [[ -n "${needs[$p]+x}" ]] || { echo "No phase '$p' (phases: ${order[*]})" >&2; exit 2; }
  wanted[$p]=1
  for n in ${needs[$p]}; do [[ "$n" == - ]] || want "$n"; done
}
if (($#)); then for p in "$@"; do want "$p"; done; else for p in "${order[@]}"; do wanted[$p]=1; done; fi
selected=()
for p in "${order[@]}"; do [[ -n "${wanted[$p]+x}" ]] && selected+=("$p"); done

mkdir -p "$state"

# What a phase's result depends on: its inputs' content and the tools' versions.
input_key() {
  local p="$1"
  {
    printf '%s\n' "$p" "${needs[$p]}" "${inputs[$p]}"
    cargo --version 2>&1
    python3 --version 2>&1
    node --version 2>&1
    # shellcheck disable=SC2086
    git ls-files -z --cached --others --exclude-standard -- Makefile infra/phases.sh infra/venv.sh \
      ${inputs[$p]} 2>/dev/null | sort -z -u | xargs -0 -r sha256sum 2>&1
  } | sha256sum | cut -d' ' -f1
}

declare -A status=() started=() seconds=() cpu=() key=()
for p in "${selected[@]}"; do status[$p]=waiting; done
t0=$SECONDS
running=0
failed=false

note() { printf '[%4ds] %s\n' $((SECONDS - t0)) "$*"; }

start() {
  local p="$1"
  if [[ "${inputs[$p]}" != - ]]; then
    key[$p]="$(input_key "$p")"
    if ! $rerun && [[ "$(cat "$state/$p.stamp" 2>/dev/null)" == "${key[$p]}" ]]; then
      status[$p]=skipped
      seconds[$p]=0
      printf 'skipped: its inputs (%s, the Makefile, the tool versions) are unchanged since it passed (%s); RERUN=1 runs it\n' \
        "${inputs[$p]}" "$(date -r "$state/$p.stamp" '+%F %T')" >"$state/$p.log"
      note "$p skipped (unchanged since it passed)"
      return
    fi
  fi
  rm -f "$state/$p.stamp" "$state/$p.rc"
  status[$p]=running
  started[$p]=$SECONDS
  running=$((running + 1))
  note "$p started"
  (
    niceness=0
    [[ "${priority[$p]}" == background ]] && niceness=19
    nice -n "$niceness" "${MAKE:-make}" --no-print-directory "$p" >"$state/$p.log" 2>&1 </dev/null
    rc=$?
    # The CPU seconds of everything the phase ran (bash's `times`: children's user and system).
    times >"$state/$p.times"
    awk 'NR == 2 { gsub(/[ms]/, " "); printf "%d\n", $1 * 60 + $2 + $3 * 60 + $4 + 0.5 }' \
      "$state/$p.times" >"$state/$p.cpu"
    echo "$rc" >"$state/$p.rc"
  ) &
}

ready() {
  local p="$1" n
  for n in ${needs[$p]}; do
    [[ "$n" == - || -z "${status[$n]+x}" ]] && continue
    [[ "${status[$n]}" == ok || "${status[$n]}" == skipped ]] || return 1
  done
}

blocked() {
  local p="$1" n
  for n in ${needs[$p]}; do
    [[ "$n" == - || -z "${status[$n]+x}" ]] && continue
    [[ "${status[$n]}" == FAILED || "${status[$n]}" == "not run" ]] && return 0
  done
  return 1
}

printed=0
print_logs() {
  while ((printed < ${#selected[@]})); do
    local p="${selected[$printed]}"
    case "${status[$p]}" in waiting | running) return ;; esac
    printf '\n######## make %s (%s)\n' "$p" "${status[$p]}"
    [[ "${status[$p]}" == "not run" ]] || cat "$state/$p.log"
    printed=$((printed + 1))
  done
}

# Starts what can start; again after a skip, which may make another phase ready.
schedule() {
  local p progress=true
  while $progress; do
    progress=false
    for p in "${selected[@]}"; do
      [[ "${status[$p]}" == waiting ]] || continue
      if $failed || blocked "$p"; then
        status[$p]="not run"
        progress=true
      elif ready "$p" && ((running < jobs)); then
        start "$p"
        progress=true
      fi
    done
  done
}

while :; do
  schedule
  print_logs
  ((running)) || break
  wait -n
  for p in "${selected[@]}"; do
    [[ "${status[$p]}" == running && -s "$state/$p.rc" ]] || continue
    running=$((running - 1))
    seconds[$p]=$((SECONDS - started[$p]))
    cpu[$p]="$(cat "$state/$p.cpu" 2>/dev/null)"
    if [[ "$(cat "$state/$p.rc")" == 0 ]]; then
      status[$p]=ok
      [[ "${inputs[$p]}" == - ]] || echo "${key[$p]}" >"$state/$p.stamp"
    else
      status[$p]=FAILED
      failed=true
    fi
    note "$p ${status[$p]} (${seconds[$p]} s)"
  done
done

# seconds: wall time of the phase (phases overlap); cpu: its processes' CPU seconds, which a busy
# machine stretches less than wall time.
printf '\n%-14s %8s %6s  %s\n' phase seconds cpu result
total_cpu=0
for p in "${selected[@]}"; do
  printf '%-14s %8s %6s  %s\n' "$p" "${seconds[$p]:--}" "${cpu[$p]:--}" "${status[$p]}"
  total_cpu=$((total_cpu + ${cpu[$p]:-0}))
done
if $failed; then
  printf '%-14s %8d %6d  %s\n' "wall time" $((SECONDS - t0)) "$total_cpu" "FAILED: the phases after a failure did not start"
  exit 1
fi
printf '%-14s %8d %6d  %s\n' "wall time" $((SECONDS - t0)) "$total_cpu" "all passed"
