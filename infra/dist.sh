#!/usr/bin/env bash
# `make dist`: the release artifacts in dist/, for users who deploy without building:
#   dist/memfault-chunk-proxy-<version>-<arch>.zip   bootstrap (mode 755), one per architecture
#   dist/memfault-chunk-proxy-<version>.template.json the stack, code from an S3 bucket/key
#   dist/SHA256SUMS
# (infra/dist.py checks each binary's ELF machine and glibc floor before packing it.)
#
#   DIST_ARCHS="arm64 x86_64" bash infra/dist.sh
#
# Builds each architecture this machine can build with cargo lambda: its own, and another when
# the Rust standard library for that target is installed already (this script never downloads
# one; the release workflow builds each architecture on a machine of its own). Skipped ones are
# named; building none is a failure.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

python3 infra/versions.py
version="$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["package"]["version"])')"

host="$(uname -m)"
[[ "$host" == aarch64 ]] && host=arm64
binaries=()
for architecture in ${DIST_ARCHS:-arm64 x86_64}; do
  case "$architecture" in
    arm64) target=aarch64-unknown-linux-gnu ;;
    x86_64) target=x86_64-unknown-linux-gnu ;;
    *) echo "DIST_ARCHS: $architecture is not arm64 or x86_64" >&2; exit 2 ;;
  esac
  libdir="$(rustc --print target-libdir --target "$target" 2>/dev/null || true)"
  if [[ "$architecture" != "$host" ]] && ! compgen -G "$libdir/libstd-*.rlib" >/dev/null; then
    echo "==> Skipping $architecture: the Rust standard library for $target is not installed" \
      "(rustup target add $target, or build on an $architecture machine)"
    continue
  fi
  echo "==> Building $architecture"
  make --no-print-directory lambda-build ARCH="$architecture"
  binaries+=("$architecture=target/lambda/$architecture/memfault-chunk-proxy/bootstrap")
done
((${#binaries[@]})) || { echo "dist: no architecture could be built here" >&2; exit 1; }

rm -rf dist
"$UV" run --locked python infra/dist.py dist --version "$version" "${binaries[@]}"
