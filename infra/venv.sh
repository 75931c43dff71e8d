# shellcheck shell=bash
# Sourced by the scripts in infra/, from the repository root.
#
#   infra_venv [REQUIREMENTS_FILE ...]    (default: infra/requirements.txt, the template tools)
#
# Installs each requirements file (all pinned through infra/constraints.txt) into .venv, then
# puts .venv/bin first on PATH. One venv holds every Python tool of `make test` but memfault-cli
# (infra/requirements-wire.txt, .venv-wire: it needs urllib3 2, checkov pins urllib3 1.26). The
# files are groups, so that `make watch` needs only the small cargo-lambda group. A hash of each
# installed file, the constraints and the installer is kept in the venv: an unchanged group costs
# nothing; a changed one recreates the venv, so that nothing of an older pin lingers (other groups
# are installed again when next asked for).
#
# The installer is uv (pinned below, from PyPI, kept in the user's cache folder beside uv's own
# package cache): the template tools install in seconds from that cache instead of a minute or
# more with pip. When uv cannot be installed, or with INFRA_INSTALLER=pip, pip does the same.
# Python writes its bytecode under the venv (PYTHONPYCACHEPREFIX), on first import: nothing is
# compiled at install that no check imports, and no __pycache__ lands in the repository.
# PYTHON=... picks the interpreter (default python3, 3.11); INFRA_VENV=... another venv.
# Safe to call from phases running at once: one venv is set up by one of them at a time.

INFRA_UV_VERSION=0.13.8

# Prints the path of uv $INFRA_UV_VERSION, installing it from PyPI (with pip, into a venv of its
# own in the cache folder) when it is not there yet; fails when it cannot be had.
infra_uv() {
  local python="${PYTHON:-python3}"
  local home="${XDG_CACHE_HOME:-$HOME/.cache}/memfault-chunk-proxy/uv-$INFRA_UV_VERSION"
  if command -v uv >/dev/null && [[ "$(uv --version 2>/dev/null)" == "uv $INFRA_UV_VERSION "* ]]; then
    command -v uv
    return
  fi
  if [[ ! -x "$home/bin/uv" ]]; then
    mkdir -p "$(dirname "$home")"
    (
      flock 9
      [[ -x "$home/bin/uv" ]] && exit 0
      echo "==> Installing uv $INFRA_UV_VERSION from PyPI into $home" >&2
      rm -rf "$home.tmp" &&
        "$python" -m venv "$home.tmp" &&
        "$home.tmp/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
          "uv==$INFRA_UV_VERSION" >&2 &&
        mv "$home.tmp" "$home"
    ) 9>"$home.lock" || return 1
  fi
  echo "$home/bin/uv"
}

infra_venv() {
  local python="${PYTHON:-python3}"
  local venv="${INFRA_VENV:-$PWD/.venv}"
  local files=("$@")
  ((${#files[@]})) || files=(infra/requirements.txt infra/requirements-lambda.txt infra/requirements-moto.txt)

  local uv="" installer=pip
  if [[ "${INFRA_INSTALLER:-uv}" != pip ]]; then
    if uv="$(infra_uv)"; then
      installer=uv
    else
      echo "==> uv $INFRA_UV_VERSION could not be installed: pip installs instead (slower)" >&2
    fi
  fi

  mkdir -p "$(dirname "$venv")"
  (
    flock 9
    _infra_venv_fill "$python" "$venv" "$installer" "$uv" "${files[@]}"
  ) 9>"$venv.lock" || return 1
  export PATH="$venv/bin:$PATH"
  export VIRTUAL_ENV="$venv"
  export PYTHONPYCACHEPREFIX="$venv/.pycache"
  unset PYTHONDONTWRITEBYTECODE
  export SAM_CLI_TELEMETRY=0
}

_infra_venv_fill() {
  local python="$1" venv="$2" installer="$3" uv="$4"
  shift 4
  local stamps="$venv/.requirements"
  local file wanted stamp changed=false
  local -A hashes=()
  for file in "$@"; do
    wanted="$( (cat "$file" infra/constraints.txt && echo "$installer") | sha256sum | cut -d' ' -f1)"
    hashes[$file]="$wanted"
    stamp="$(cat "$stamps/$(basename "$file").sha256" 2>/dev/null || true)"
    if [[ -n "$stamp" && "$stamp" != "$wanted" ]]; then
      changed=true
    fi
  done

  if [[ ! -x "$venv/bin/python" ]] || $changed; then
    echo "==> Creating $venv ($("$python" --version), with $installer)"
    if [[ $installer == uv ]]; then
      "$uv" venv --quiet --clear --python "$python" "$venv" || return 1
    else
      "$python" -m venv --clear "$venv" || return 1
    fi
  fi
  mkdir -p "$stamps"
  local missing=() args=()
  for file in "$@"; do
    stamp="$stamps/$(basename "$file").sha256"
    [[ "$(cat "$stamp" 2>/dev/null || true)" == "${hashes[$file]}" ]] || missing+=("$file")
  done
  ((${#missing[@]})) || return 0
  echo "==> Installing ${missing[*]} into $venv ($installer)"
  for file in "${missing[@]}"; do args+=(-r "$file"); done
  if [[ $installer == uv ]]; then
    "$uv" pip install --quiet --python "$venv/bin/python" "${args[@]}" || return 1
  else
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet "${args[@]}" ||
      return 1
  fi
  for file in "${missing[@]}"; do
    printf '%s\n' "${hashes[$file]}" >"$stamps/$(basename "$file").sha256"
  done
}
