#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default (offline-capable, real data):
#   elasticlm run --preset demo --out runs/demo
# i.e. the whole method on rt-polarity: task-teacher fine-tuning (cached), supernet pretraining with
# PCA-guided growth, supernet fine-tuning, evolutionary search, head search, retraining of the found
# model and of the equal-budget baselines, a TF-IDF baseline, export and report (runs/demo/report.md).
# A finished stage is skipped on a second run; an interrupted one resumes from its last checkpoint.
# Extra arguments go to `elasticlm run` (e.g. `bash scripts/demo.sh --out runs/other retrain.seeds=[0,1]`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ELM=.venv/bin/elasticlm
$ELM data fetch demo
out=runs/demo
for a in "$@"; do [ "$a" = "--out" ] && out=""; done
if [ -n "$out" ]; then set -- --out "$out" "$@"; fi
exec $ELM run --preset demo "$@"
