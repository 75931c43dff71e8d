#!/usr/bin/env bash
# `sam build` of template.yaml: cargo-lambda cross-compiles the function (with zig as
# the linker) into .aws-sam/build, ready for `sam deploy`.
#
# Installs what it is missing:
#   - .venv with the SAM CLI (infra/requirements.txt, as infra/validate.sh does);
#   - zig, as the ziglang package from PyPI, into .venv (cargo-lambda runs
#     `python3 -m ziglang`);
#   - cargo-lambda, with `cargo install --locked` into ~/.cargo/bin (compiles it:
#     slow the first time only);
#   - the Rust standard library of the target, with `rustup target add`.
#
# ARCHITECTURE=x86_64 builds for x86_64 (default arm64, the template's default); deploy
# with the same Architecture parameter. Other arguments go to `sam build`.
set -euo pipefail

CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.15.2

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=infra/venv.sh
source infra/venv.sh
infra_venv

architecture="${ARCHITECTURE:-arm64}"
case "$architecture" in
  arm64) target=aarch64-unknown-linux-gnu ;;
  x86_64) target=x86_64-unknown-linux-gnu ;;
  *)
    echo "ARCHITECTURE must be arm64 or x86_64, not $architecture" >&2
    exit 2
    ;;
esac

if [[ "$(python -m ziglang version 2>/dev/null || true)" != "$ZIGLANG_VERSION" ]]; then
  echo "==> Installing zig $ZIGLANG_VERSION (PyPI: ziglang) into .venv"
  python -m pip install --disable-pip-version-check --no-input --quiet "ziglang==$ZIGLANG_VERSION"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if [[ "$(cargo lambda --version 2>/dev/null || true)" != *" $CARGO_LAMBDA_VERSION"* ]]; then
  echo "==> Installing cargo-lambda $CARGO_LAMBDA_VERSION (cargo install; this compiles it)"
  # Its own target directory, so that the project's target/ is left alone.
  CARGO_TARGET_DIR="${CARGO_LAMBDA_TARGET_DIR:-${TMPDIR:-/tmp}/cargo-lambda-target}" \
    cargo install cargo-lambda --locked --version "$CARGO_LAMBDA_VERSION"
fi

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  echo "==> Adding Rust target $target"
  rustup target add "$target"
fi

echo "==> $(cargo lambda --version), zig $(python -m ziglang version), $(sam --version)"
echo "\$ sam build --parameter-overrides Architecture=$architecture $*"
time sam build --parameter-overrides "Architecture=$architecture" "$@"
