"""Experiments over whole runs: `run` (the pipeline of `elasticlm run`, one resumable run folder),
`compare` (the found model against the equal-budget baselines, metrics.json and its table) and
`ablation` (the grid of runs with one component switched off)."""
