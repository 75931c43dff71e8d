#!/usr/bin/env bash
# `make deploy-path` (part of `make test`): infra/deploy_path.py in .venv, with the template tools
# (the SAM CLI) and moto server, installed from PyPI on first use.
set -euo pipefail

repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=infra/venv.sh
source infra/venv.sh
infra_venv
python infra/deploy_path.py
