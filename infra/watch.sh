#!/usr/bin/env bash
# `make watch`: the function under cargo lambda's emulator, offline unless asked otherwise.
#
#   EVENT=events/NAME.json LAMBDA_ADDRESS=127.0.0.1 LAMBDA_PORT=9000 RECEIVER_PORT=9001 \
#     bash infra/watch.sh      (cargo-lambda on PATH: the Makefile runs it with uv run)
#
# - builds the function and the local receiver of examples/local.rs, then runs the function
#   against cargo lambda's Runtime API (`--only-lambda-apis`) through infra/deadline_relay.py:
#   cargo-lambda 1.9.2 sends its timeout where Lambda sends the deadline, and the relay mends it,
#   so that the function reads the deadline exactly as in Lambda. After a change to the code,
#   stop `make watch` (Ctrl-C) and start it again: it rebuilds at start;
# - without MEMFAULT_CHUNKS_URL, starts that receiver on loopback (it answers 202 like Memfault
#   and prints each request, here) and points the function at it; with it, posts there for real;
# - gives the function the settings of EVENT's sample (events/NAME.env), if it has any;
# - as `make local`, leaves out the metric documents (EMF) unless VERBOSE=1.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

event="${EVENT:-events/heartbeat.json}"
address="${LAMBDA_ADDRESS:-127.0.0.1}"
port="${LAMBDA_PORT:-9000}"
receiver_port="${RECEIVER_PORT:-9001}"

echo "==> Building the function and the local receiver"
# One build of both, with the test build's profile (target/debug, line tables, not incremental;
# watch does not rebuild on a change anyway): the example brings the dev-dependencies' features
# into it, so the dependencies, the library and the binary are the ones `cargo test` built, and
# after `make lint` only the example compiles.
cargo build --locked --profile test --bin memfault-chunk-proxy --example local

# The function's settings go in one file, read into its environment below: the sample's settings,
# then this script's (later lines win; an empty MEMFAULT_METRICS_NAMESPACE turns the metrics
# off), each value single-quoted so that nothing in it (`{project_slug}`, `$`) is expanded.
settings_dir="$(mktemp -d)"
env_file="$settings_dir/watch.env"
receiver=
emulator=
relay=
cleanup() {
  local process
  for process in "$relay" "$emulator" "$receiver"; do
    if [[ -n "$process" ]]; then kill "$process" 2>/dev/null || true; fi
  done
  rm -rf "$settings_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
setting() {
  if [[ "$2" == *"'"* ]]; then
    echo "$1: a value with a single quote cannot be passed through the settings file" >&2
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
  cargo run --locked --quiet --profile test --example local -- --receive "127.0.0.1:$receiver_port" &
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
cargo lambda watch --only-lambda-apis --invoke-address "$address" --invoke-port "$port" &
emulator=$!
for _ in $(seq 100); do
  (: <"/dev/tcp/$address/$port") 2>/dev/null && break
  kill -0 "$emulator" 2>/dev/null || { echo "cargo lambda watch ended: see above" >&2; exit 1; }
  sleep 0.1
done
# The relay prints the address to give the function as AWS_LAMBDA_RUNTIME_API, then serves.
exec {relay_out}< <(python3 infra/deadline_relay.py "http://$address:$port/.rt/memfault-chunk-proxy")
relay=$!
read -r -t 10 runtime_api <&"$relay_out" || { echo "the deadline relay did not start" >&2; exit 1; }

# The function, configured as cargo lambda configures the functions it starts, with the
# settings above; not exec: the trap above stops the receiver, relay and emulator when it ends.
(
  set -a
  # shellcheck disable=SC1090
  source "$env_file"
  set +a
  AWS_LAMBDA_FUNCTION_NAME=memfault-chunk-proxy AWS_LAMBDA_FUNCTION_VERSION=1 \
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_MAX_CONCURRENCY=1 \
    AWS_LAMBDA_RUNTIME_API="$runtime_api" exec "${CARGO_TARGET_DIR:-target}/debug/memfault-chunk-proxy"
)
