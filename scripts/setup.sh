#!/usr/bin/env bash
# Create .venv and install elasticlm into it (idempotent; nothing is reinstalled when nothing changed).
# torch is installed first, pinned: an unpinned torch pulls a multi-GB CUDA build. Without a GPU the
# CPU build is taken from PyTorch's CPU index when it can be reached (else pip's usual sources,
# which on the project's machines hold the CPU wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH=torch==2.13.0
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
log=.venv/setup.log
quiet() { "$@" >"$log" 2>&1 || { cat "$log"; echo "setup failed: $*" >&2; exit 1; }; }
if ! python -c "import torch" 2>/dev/null; then
  cpu_index=https://download.pytorch.org/whl/cpu
  if ! command -v nvidia-smi >/dev/null 2>&1 && python - "$cpu_index" <<'PYEOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)
PYEOF
  then
    echo "installing $TORCH (CPU build, from $cpu_index) ..."
    quiet pip install "$TORCH" --index-url "$cpu_index" --extra-index-url https://pypi.org/simple
  else
    echo "installing $TORCH ..."
    quiet pip install "$TORCH"
  fi
  python -c "import torch; print('installed torch', torch.__version__, '(CUDA ' + torch.version.cuda + ')' if torch.version.cuda else '(CPU build)')"
fi
stamp=.venv/.elasticlm-installed
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! python -c "import elasticlm, transformers, datasets, pytest" 2>/dev/null; then
  echo "installing elasticlm and its dependencies ..."
  quiet pip install -e ".[dev]"
  echo "$want" > "$stamp"
fi
