#!/usr/bin/env bash
# `sam build` of template.yaml for one architecture: cargo-lambda builds the function (zig as
# the linker) and SAM writes the deployable template and bootstrap into .aws-sam/build-<arch>,
# so that an arm64 and an x86_64 build do not replace each other. Deploy it with
# `make deploy ARCH=<arch>`, or `sam deploy --template-file .aws-sam/build-<arch>/template.yaml`
# with the template parameter Architecture set to the same value.
#
#   ARCH=arm64|x86_64 bash infra/sam-build.sh [sam build arguments ...]   (default arm64)
#
# Sets up what is missing first: the SAM CLI, cargo-lambda and zig in .venv (PyPI), and for a
# cross build the Rust target (see infra/install-cargo-lambda.sh).
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

architecture="${ARCH:-arm64}"
bash infra/install-cargo-lambda.sh "$architecture"

# shellcheck source=infra/venv.sh
source infra/venv.sh
infra_venv infra/requirements.txt infra/requirements-lambda.txt

args=(--build-dir ".aws-sam/build-$architecture" --parameter-overrides "Architecture=$architecture")
echo "\$ sam build ${args[*]} $*"
time sam build "${args[@]}" "$@"
