# shellcheck shell=bash
# Sourced by the scripts in infra/, from the repository root.
#
#   infra_venv [REQUIREMENTS_FILE ...]    (default: infra/requirements.txt, the template tools)
#
# Installs each requirements file (all pinned through infra/constraints.txt) into .venv, then
# puts .venv/bin first on PATH. The files are independent groups, so that `make watch` needs only
# the small cargo-lambda group and not the template tools (minutes). A hash of each installed file
# and the constraints is kept in the venv: an unchanged group costs nothing; a changed one
# recreates the venv, so that nothing of an older pin lingers (other groups are installed again
# when next asked for). PYTHON=... picks the interpreter (default python3, 3.11); INFRA_VENV=...
# another venv, for a group that cannot share one with the others.

infra_venv() {
  local python="${PYTHON:-python3}"
  local venv="${INFRA_VENV:-$PWD/.venv}"
  local stamps="$venv/.requirements"
  local files=("$@")
  ((${#files[@]})) || files=(infra/requirements.txt)

  local file wanted stamp changed=false
  local -A hashes=()
  for file in "${files[@]}"; do
    wanted="$("$python" -c 'import hashlib, sys
h = hashlib.sha256()
for name in sys.argv[1:]:
    with open(name, "rb") as f:
        h.update(f.read())
print(h.hexdigest())' "$file" infra/constraints.txt)"
    hashes[$file]="$wanted"
    stamp="$(cat "$stamps/$(basename "$file").sha256" 2>/dev/null || true)"
    if [[ -n "$stamp" && "$stamp" != "$wanted" ]]; then
      changed=true
    fi
  done

  if [[ ! -x "$venv/bin/python" ]] || $changed; then
    echo "==> Creating $venv ($("$python" --version))"
    "$python" -m venv --clear "$venv"
  fi
  mkdir -p "$stamps"
  for file in "${files[@]}"; do
    stamp="$stamps/$(basename "$file").sha256"
    if [[ "$(cat "$stamp" 2>/dev/null || true)" != "${hashes[$file]}" ]]; then
      echo "==> Installing $file into $venv"
      "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet -r "$file"
      printf '%s\n' "${hashes[$file]}" >"$stamp"
    fi
  done
  export PATH="$venv/bin:$PATH"
  export SAM_CLI_TELEMETRY=0
}
