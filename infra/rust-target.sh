#!/usr/bin/env bash
# The Rust standard library for a Lambda architecture, which `cargo lambda build` (and so
# `sam build`) needs:
#
#   bash infra/rust-target.sh arm64|x86_64
#
# The host's own target comes with every toolchain, so an x86_64 build on x86_64 needs nothing
# more. A cross build (arm64 on x86_64) needs `rustup target add`, which downloads from Rust's
# distribution server, not from a package registry: it is asked for here and nowhere else, and
# when it cannot be had the script says what to do instead.
set -euo pipefail

architecture="${1:-}"
case "$architecture" in
  arm64) target=aarch64-unknown-linux-gnu ;;
  x86_64) target=x86_64-unknown-linux-gnu ;;
  *)
    echo "The architecture must be arm64 or x86_64 (as the template's Architecture), not '$architecture'" >&2
    exit 2
    ;;
esac

target_installed() {
  local libdir
  libdir="$(rustc --print target-libdir --target "$target" 2>/dev/null)" &&
    compgen -G "$libdir/libstd-*.rlib" >/dev/null
}

if ! target_installed; then
  echo "==> The Rust standard library for $target is missing: rustup target add $target"
  if ! command -v rustup >/dev/null || ! timeout 300 rustup target add "$target" || ! target_installed; then
    host="$(uname -m)"
    [[ "$host" == aarch64 ]] && host=arm64
    cat >&2 <<EOF

Cannot build for $architecture: the Rust standard library for $target is not installed,
and \`rustup target add $target\` could not install it. It comes from Rust's own
distribution server, which is not a package registry. Either
  - run \`rustup target add $target\` where that server can be reached (or with
    RUSTUP_DIST_SERVER pointing at a mirror of it), then build again; or
  - build for this machine's own architecture, which needs nothing but the package
    registries: make lambda-build ARCH=$host (or make sam-build ARCH=$host), and deploy
    with the template parameter Architecture=$host.
EOF
    exit 1
  fi
fi
echo "==> Rust target $target installed"
