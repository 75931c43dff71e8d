#!/usr/bin/env bash
# `make watch`: the function under cargo lambda's emulator, offline unless asked otherwise.
#
#   EVENT=events/NAME.json LAMBDA_ADDRESS=127.0.0.1 LAMBDA_PORT=9000 RECEIVER_PORT=9001 \
#     bash infra/watch.sh      (cargo-lambda on PATH: the Makefile puts .venv/bin first)
#
# - builds first (the function, and the local receiver of examples/local.rs), so that the first
#   `make invoke` answers at once instead of waiting for cargo lambda's own first build;
# - without MEMFAULT_CHUNKS_URL, starts that receiver on loopback (it answers 202 like Memfault
#   and prints each request, here) and points the function at it; with it, posts there for real;
# - gives the function the settings of EVENT's sample (events/NAME.env), if it has any;
# - as `make local`, leaves out the metric documents (EMF) unless VERBOSE=1.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

cargo="${CARGO:-cargo}"
event="${EVENT:-events/heartbeat.json}"
address="${LAMBDA_ADDRESS:-127.0.0.1}"
port="${LAMBDA_PORT:-9000}"
receiver_port="${RECEIVER_PORT:-9001}"

echo "==> Building the function and the local receiver"
"$cargo" build --locked --bin memfault-chunk-proxy

# The function's settings go in one env file: `cargo lambda watch` takes one --env-file, and
# refuses `--env-var NAME=` with an empty value, which is how MEMFAULT_METRICS_NAMESPACE turns
# the metrics off. The file is the sample's settings, then this script's (later lines win), each
# value single-quoted: its parser reads `{...}` in a bare value as a substitution.
settings_dir="$(mktemp -d)"
env_file="$settings_dir/watch.env"
receiver=
cleanup() {
  if [[ -n "$receiver" ]]; then kill "$receiver" 2>/dev/null || true; fi
  rm -rf "$settings_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
setting() {
  if [[ "$2" == *"'"* ]]; then
    echo "$1: a value with a single quote cannot be passed to cargo lambda watch" >&2
    exit 2
  fi
  printf "%s='%s'\n" "$1" "$2" >>"$env_file"
}

settings="${event%.json}.env"
if [[ -f "$settings" ]]; then
  echo "==> Settings of $event from $settings:"
  grep -Ev '^[[:space:]]*(#|$)' "$settings" | sed 's/^/    /'
  while IFS= read -r line; do
    setting "${line%%=*}" "${line#*=}"
  done < <(grep -Ev '^[[:space:]]*(#|$)' "$settings")
fi

if [[ -z "${MEMFAULT_CHUNKS_URL:-}" ]]; then
  "$cargo" build --locked --example local
  "$cargo" run --locked --quiet --example local -- --receive "127.0.0.1:$receiver_port" &
  receiver=$!
  setting MEMFAULT_CHUNKS_URL "http://127.0.0.1:$receiver_port"
else
  echo "==> Posting to $MEMFAULT_CHUNKS_URL (MEMFAULT_CHUNKS_URL)"
  setting MEMFAULT_CHUNKS_URL "$MEMFAULT_CHUNKS_URL"
fi

if [[ "${VERBOSE:-}" != 1 && -z "${MEMFAULT_METRICS_NAMESPACE+set}" ]]; then
  # An empty namespace is the function's own switch for "no metrics".
  setting MEMFAULT_METRICS_NAMESPACE ""
fi

echo "==> cargo lambda watch on $address:$port   (then, in another shell: make invoke EVENT=$event)"
# Not exec: the trap above stops the receiver when watch ends.
cargo lambda watch --invoke-address "$address" --invoke-port "$port" --env-file "$env_file"
