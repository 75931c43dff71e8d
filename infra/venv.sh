# shellcheck shell=bash
# Sourced by infra/validate.sh and infra/sam-build.sh, from the repository root.
# Creates .venv from infra/requirements.txt when it is missing or the requirements
# changed (a hash of them is kept in the venv), then puts it first on PATH.
# PYTHON=... picks the interpreter (default python3, 3.11).

infra_venv() {
  local python="${PYTHON:-python3}"
  local venv="$PWD/.venv"
  local stamp="$venv/.infra-requirements.sha256"
  local wanted
  wanted="$("$python" -c 'import hashlib, sys
h = hashlib.sha256()
for name in sys.argv[1:]:
    with open(name, "rb") as f:
        h.update(f.read())
print(h.hexdigest())' infra/requirements.txt infra/constraints.txt)"

  if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
    echo "==> Setting up $venv from infra/requirements.txt ($("$python" --version))"
    "$python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
      -r infra/requirements.txt
    printf '%s\n' "$wanted" >"$stamp"
  fi
  export PATH="$venv/bin:$PATH"
  export SAM_CLI_TELEMETRY=0
}
