#!/usr/bin/env bash
# Measure retraining levers on a finished run, one change at a time, 3 seeds each:
#   bash scripts/levers.sh RUN [NAME=OVERRIDES ...]
# Every lever retrains the run's found architecture from its fine-tuned supernet with the run's own
# retraining recipe (RUN/run_config.json) plus the lever's overrides, seeds 0 1 2, into RUN/levers/NAME
# (resumable: finished seeds are reused; seeds run retrain.workers at a time), then prints mean ± std of dev
# and test accuracy per lever.
# Default levers: the run's recipe, twice the learning rate, 2 and 3 epochs.
# ARCH=arch.json retrains that architecture instead of the found one (it must be a path of the supernet).
# Example: bash scripts/levers.sh runs/demo base= lr2x=train.lr=2e-4 "epochs2=train.epochs=2"
#          ARCH=big.json bash scripts/levers.sh runs/demo big=
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: bash scripts/levers.sh RUN [NAME=OVERRIDES ...]}
shift
[ -f "$run/run_config.json" ] && [ -f "$run/arch.json" ] && [ -d "$run/supernet-ft" ] \
  || { echo "$run: not a run folder with a finished search (run_config.json, arch.json, supernet-ft/)" >&2; exit 2; }
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
mkdir -p "$run/levers"
# the run's retraining recipe as a retrain config file (seeds come from the command line)
"$PY" - "$run" <<'PYEOF'
import json, sys, yaml
from elasticlm.config import from_dict, to_dict
from elasticlm.experiment.run import RunConfig
run = sys.argv[1]
# the retrain config with what the run handed it (task, teacher, corpus, teacher_epochs), as `compare` reads it
r = to_dict(from_dict(RunConfig, json.load(open(f"{run}/run_config.json"))["config"]).retrain)
r.pop("seeds", None)
open(f"{run}/levers/recipe.yaml", "w").write(yaml.safe_dump(r, sort_keys=False))
PYEOF
[ $# -gt 0 ] || set -- "base=" "lr2x=train.lr=2e-4" "epochs2=train.epochs=2" "epochs3=train.epochs=3"
for lever in "$@"; do
  name=${lever%%=*}
  overrides=${lever#*=}
  echo "== lever $name: ${overrides:-as the run} =="
  # shellcheck disable=SC2086
  "$PY" -m elasticlm retrain --supernet "$run/supernet-ft" --arch "${ARCH:-$run/arch.json}" \
    --config "$run/levers/recipe.yaml" --seeds 0 1 2 --out "$run/levers/$name" $overrides
done
"$PY" - "$run" "$@" <<'PYEOF'
import json, sys
from pathlib import Path
import numpy as np
run, levers = Path(sys.argv[1]), [a.split("=", 1) for a in sys.argv[2:]]
print(f"{'lever':10s} {'overrides':28s} {'dev acc':>14s} {'test acc':>14s} {'s/seed':>7s}")
taught = set()
for name, overrides in levers:
    got = [json.loads(p.read_text()) for p in sorted((run / "levers" / name).glob("**/result.json"))]
    got = [g for g in got if g.get("stage") == "retrain"]
    cells = []
    for split in ("dev", "test"):
        v = np.array([g[split]["accuracy"] for g in got]) * 100
        cells.append(f"{v.mean():6.2f} ± {v.std(ddof=1) if len(v) > 1 else 0:4.2f}")
    secs = np.mean([g["seconds"] for g in got])
    print(f"{name:10s} {overrides or '-':28s} {cells[0]:>14s} {cells[1]:>14s} {secs:7.0f}")
    taught.update(json.dumps(g["teacher"], sort_keys=True) for g in got if "teacher" in g)
# the task teacher comes from the cache; a cache of another machine or run may hold another fine-tune of it
mine = json.loads((run / "metrics.json").read_text()).get("teacher", {}) if (run / "metrics.json").exists() else {}
mine = json.dumps({k: mine[k] for k in ("dev", "test") if k in mine}, sort_keys=True)
def brief(t):  # '{"dev": {"accuracy": 0.84, ...}, ...}' -> 'dev 84.0 / test 84.1' (first metric)
    t = json.loads(t)
    return " / ".join(f"{s} {100 * next(iter(t[s].values())):.1f}" for s in ("dev", "test") if t.get(s))
if taught and taught != {mine}:
    print(f"note: taught by a task teacher other than the run's ({'; '.join(brief(t) for t in sorted(taught))}; "
          f"the run's: {brief(mine)}): compare the levers with a base= lever, not with the run's own numbers")
PYEOF
