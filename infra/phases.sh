#!/usr/bin/env bash
# The shell of `make test`; make itself schedules the phases, and skips one whose
# target/phases/NAME.passed is newer than target/phases/key (the Makefile: PHASES).
#
#   bash infra/phases.sh key                  target/phases/key written anew when an input changed
#   bash infra/phases.sh run NAME NICENESS    `make NAME`, timed; NAME.passed from the key if it passes
#   bash infra/phases.sh table STATUS SECONDS NAME...  the run's table; exits with make's STATUS
#
# The inputs are every file git lists (tracked, or new and not ignored: uv.lock among them) and
# the tools' versions: no list to keep, none to go stale. CI=true, RERUN=1 or no git: no skips.
set -uo pipefail
dir=target/phases

case "$1" in
key)
  mkdir -p "$dir"
  if [[ "${CI:-}" == true || "${RERUN:-}" == 1 ]] || ! git rev-parse --is-inside-work-tree &>/dev/null; then
    rm -f "$dir"/*.passed
  fi
  # A deleted file still listed prints an error: that changes the key too.
  key="$({
    git ls-files -z --cached --others --exclude-standard | sort -z | xargs -0 sha256sum 2>&1
    rustc -vV; cargo -V; python3 -V; node -v; "$UV" -V
  } | sha256sum)"
  [[ "$key" == "$(cat "$dir/key" 2>/dev/null)" ]] || echo "$key" >"$dir/key"
  touch "$dir/run"
  ;;
run)
  name="$2"
  rm -f "$dir/$name.passed"
  TIMEFORMAT='%0R %0U %0S'
  { time nice -n "$3" make --no-print-directory "$name" 2>&1; } 2>"$dir/$name.times"
  status=$?
  read -r wall user sys <"$dir/$name.times"
  echo "$wall $((user + sys))" >"$dir/$name.time"
  echo "==> make $name: exit status $status in $wall s"
  ((status == 0)) && cp "$dir/key" "$dir/$name.passed"
  ;;
table)
  status="$2" seconds="$3"
  shift 3
  printf '\n%-14s %8s %6s  %s\n' phase seconds cpu result
  for name in "$@"; do
    wall=- cpu=- result="not run"
    [[ "$dir/$name.passed" -nt "$dir/key" ]] && result="skipped (unchanged since it passed)"
    if [[ "$dir/$name.time" -nt "$dir/run" ]]; then
      read -r wall cpu <"$dir/$name.time"
      result="$([[ -e "$dir/$name.passed" ]] && echo ok || echo FAILED)"
    fi
    printf '%-14s %8s %6s  %s\n' "$name" "$wall" "$cpu" "$result"
  done
  printf '%-14s %8s\n' "wall time" "$seconds"
  exit "$status"
  ;;
esac
