#!/usr/bin/env bash
# `sam build` of template.yaml: cargo-lambda cross-compiles the function (zig as the
# linker) into .aws-sam/build, ready for `sam deploy`. First installs what is missing
# (infra/install-cargo-lambda.sh: the SAM CLI and zig in .venv, cargo-lambda, the Rust
# target).
#
# ARCHITECTURE=x86_64 (or ARCH=x86_64) builds for x86_64 instead of the Architecture in
# samconfig.toml (arm64); deploy with the same Architecture parameter. Other arguments
# go to `sam build`.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

bash infra/install-cargo-lambda.sh

# shellcheck source=infra/venv.sh
source infra/venv.sh
infra_venv
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

args=()
architecture="${ARCHITECTURE:-${ARCH:-}}"
if [[ -n "$architecture" ]]; then
  args+=(--parameter-overrides "Architecture=$architecture")
fi
echo "\$ sam build ${args[*]} $*"
time sam build "${args[@]}" "$@"
