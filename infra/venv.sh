# shellcheck shell=bash
# Sourced by the scripts in infra/, from the repository root.
#
#   infra_venv [REQUIREMENTS_FILE ...]    (default: infra/requirements.txt, the template tools)
#
# Installs each requirements file (all pinned through infra/constraints.txt) into the venv, then
# puts its bin/ first on PATH. One venv holds every Python tool of `make test` but memfault-cli
# (infra/requirements-wire.txt, `.venv-wire`: it needs urllib3 2, checkov pins urllib3 1.26). The
# files are groups, so that `make watch` needs only the small cargo-lambda group; a group already
# installed costs nothing.
#
# Where the venvs live: in the user's cache folder, one per content of the pins, as poetry and
# pre-commit keep theirs; `.venv` (or `.venv-wire`) in the repository is a link to it. The key is
# a hash of every infra/requirements*.txt, the constraints, the installer and the interpreter, so
# a clone, a worktree or a fresh checkout of the same pins finds its tools installed and their
# bytecode compiled, while a changed pin gets a venv of its own (nothing of an older pin lingers).
# Venvs not used for 14 days are removed when another is set up. INFRA_VENV_HOME=... moves them.
#
# The installer is uv (pinned below, from PyPI, kept in the user's cache folder beside uv's own
# package cache): the template tools install in seconds from that cache instead of a minute or
# more with pip. When uv cannot be installed, or with INFRA_INSTALLER=pip, pip does the same.
# Python writes its bytecode under the venv (PYTHONPYCACHEPREFIX), on first import: nothing is
# compiled at install that no check imports, and no __pycache__ lands in the repository.
# PYTHON=... picks the interpreter (default python3, 3.11); INFRA_VENV_NAME=... another venv.
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
  local name="${INFRA_VENV_NAME:-.venv}"
  local home="${INFRA_VENV_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/memfault-chunk-proxy/venvs}"
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

  local key
  key="$( {
    echo "$name" "$installer"
    "$python" -c 'import sys; print(sys.version, sys.executable)'
    cat infra/constraints.txt infra/requirements*.txt
  } | sha256sum | cut -c1-16)" || return 1
  local venv="$home/${name#.}-$key"
  mkdir -p "$home"
  (
    flock 9
    _infra_venv_fill "$python" "$venv" "$installer" "$uv" "${files[@]}" || exit 1
    # The link in the repository (a directory there is the layout before the cache: replaced).
    if [[ "$(readlink "$name" 2>/dev/null)" != "$venv" ]]; then
      rm -rf "$name" && ln -s "$venv" "$name"
    fi
    touch "$venv/.last-used"
  ) 9>"$venv.lock" || return 1
  _infra_venv_prune "$home"
  # The venv's real path, not the link's: Python then names its modules, and their bytecode under
  # PYTHONPYCACHEPREFIX, by the shared path, and another clone reuses the compiled files.
  export PATH="$venv/bin:$PATH"
  export VIRTUAL_ENV="$venv"
  export PYTHONPYCACHEPREFIX="$venv/.pycache"
  unset PYTHONDONTWRITEBYTECODE
  export SAM_CLI_TELEMETRY=0
}

# Removes the venvs under $1 not used for 14 days, but one being set up or used right now.
_infra_venv_prune() {
  local stale
  find "$1" -mindepth 2 -maxdepth 2 -name .last-used -mtime +14 2>/dev/null | while read -r stale; do
    stale="$(dirname "$stale")"
    ( flock -n 9 && rm -rf "$stale" ) 9>"$stale.lock" && rm -f "$stale.lock"
  done
}

_infra_venv_fill() {
  local python="$1" venv="$2" installer="$3" uv="$4"
  shift 4
  local stamps="$venv/.requirements"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> Creating $venv ($("$python" --version), with $installer)"
    if [[ $installer == uv ]]; then
      "$uv" venv --quiet --clear --python "$python" "$venv" || return 1
    else
      "$python" -m venv --clear "$venv" || return 1
    fi
  fi
  mkdir -p "$stamps"
  local file missing=() args=()
  for file in "$@"; do
    [[ -f "$stamps/$(basename "$file")" ]] || missing+=("$file")
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
    touch "$stamps/$(basename "$file")"
  done
}
