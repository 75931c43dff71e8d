#!/usr/bin/env bash
# Installs what `cargo lambda build` (and so `sam build`) needs, when missing:
#   - cargo-lambda, with `cargo install --locked` into ~/.cargo/bin (this compiles it:
#     several minutes, the first time only), in a target directory of its own;
#   - zig, which cargo-lambda uses as the linker to cross-compile: the ziglang package
#     from PyPI, in the repository's .venv (set up as by infra/validate.sh). cargo-lambda
#     runs `python3 -m ziglang`, so put .venv/bin first on PATH when building, or set
#     CARGO_ZIGBUILD_PYTHON_PATH=.venv/bin/python;
#   - the Rust standard library for the target (`rustup target add`), for
#     ARCHITECTURE (or ARCH) arm64 (default) or x86_64.
set -euo pipefail

CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.15.2

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=infra/venv.sh
source infra/venv.sh
infra_venv

architecture="${ARCHITECTURE:-${ARCH:-arm64}}"
case "$architecture" in
  arm64) target=aarch64-unknown-linux-gnu ;;
  x86_64) target=x86_64-unknown-linux-gnu ;;
  *)
    echo "ARCHITECTURE must be arm64 or x86_64, not $architecture" >&2
    exit 2
    ;;
esac

if [[ "$(python -m ziglang version 2>/dev/null || true)" != "$ZIGLANG_VERSION" ]]; then
  echo "==> Installing zig $ZIGLANG_VERSION (PyPI package ziglang) into .venv"
  python -m pip install --disable-pip-version-check --no-input --quiet "ziglang==$ZIGLANG_VERSION"
fi

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if [[ "$(cargo lambda --version 2>/dev/null || true)" != *" $CARGO_LAMBDA_VERSION"* ]]; then
  echo "==> Installing cargo-lambda $CARGO_LAMBDA_VERSION (cargo install: compiles it, takes a while)"
  CARGO_TARGET_DIR="${CARGO_LAMBDA_TARGET_DIR:-${TMPDIR:-/tmp}/cargo-lambda-target}" \
    cargo install cargo-lambda --locked --version "$CARGO_LAMBDA_VERSION"
fi

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  echo "==> Adding the Rust target $target"
  rustup target add "$target"
fi

echo "==> $(cargo lambda --version), zig $(python -m ziglang version) (.venv), Rust target $target"
