#!/usr/bin/env bash
# `make test`: runs each phase (a make target) in turn, stops at the first failure, and ends with
# how long each phase took, so a slow or failing phase is seen at a glance.
#
#   bash infra/phases.sh PHASE ...
set -uo pipefail

names=()
times=()
verdicts=()
status=0
for phase in "$@"; do
  printf '\n######## make %s\n' "$phase"
  start=$SECONDS
  if "${MAKE:-make}" --no-print-directory "$phase"; then
    verdict=ok
  else
    verdict=FAILED
    status=1
  fi
  names+=("$phase")
  times+=($((SECONDS - start)))
  verdicts+=("$verdict")
  ((status == 0)) || break
done

total=0
printf '\n%-14s %8s  %s\n' phase seconds result
for i in "${!names[@]}"; do
  printf '%-14s %8d  %s\n' "${names[$i]}" "${times[$i]}" "${verdicts[$i]}"
  total=$((total + times[i]))
done
printf '%-14s %8d  %s\n' total "$total" "$( ((status == 0)) && echo "all passed" || echo "stopped at the first failure")"
exit "$status"
