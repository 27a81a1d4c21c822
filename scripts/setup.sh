#!/usr/bin/env bash
# Create .venv and install elasticlm into it (idempotent, fast when already set up).
# torch is pinned first: on CPU machines an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
log=.venv/setup.log
quiet() { "$@" >"$log" 2>&1 || { cat "$log"; echo "setup failed: $*" >&2; exit 1; }; }
python -c "import torch" 2>/dev/null || { echo "installing torch==2.13.0 ..."; quiet pip install "torch==2.13.0"; }
python -c "import elasticlm, transformers, datasets, pytest" 2>/dev/null || echo "installing elasticlm and its dependencies ..."
quiet pip install -e ".[dev]"
