#!/usr/bin/env bash
# Set up .venv and run the default test suite (pass extra pytest arguments through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
