"""One stage's output folder: check it, claim it, and mark it done (torch-free).

Every stage (supernet pretraining and fine-tuning, search, heads, retraining, the task teacher, the
causal-LM stages) runs the same skeleton around its own set-up and `fit`:

    folder = StageFolder(out, "search", run_config)
    if (done := folder.done()) is not None:     # finished: its result.json, without training again
        return done
    ...set up (every input checked)...
    folder.claim(dist)                          # run_config.json: the folder is this config's
    ...fit, validate...
    return folder.finish(result, dist)          # result.json, written atomically and last

A folder made with another config is refused before a file is touched; an unfinished folder of the
same config is resumed (the stage's `fit` finds its newest checkpoint).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from elasticlm.io import atomic_file
from elasticlm.errors import ElasticLMError

CONFIG_FILE = "run_config.json"
"""The claim: {"stage": ..., "config": ...}, written before training starts."""
DONE_FILE = "result.json"
"""The done-marker: the stage's result, written last."""


class StageFolder:
    """The output folder `out` of one run of stage `stage` made with `config` (a JSON-able dict)."""

    def __init__(self, out: str | Path, stage: str, config: dict[str, Any]):
        self.out = Path(out)
        self.stage = stage
        self.config = config

    def done(self) -> dict | None:
        """Read-only: the folder is free (None), finished (its result), or an unfinished run of this
        same config (None, resumed); anything else is refused before a file is touched."""
        marker, result = self.out / CONFIG_FILE, self.out / DONE_FILE
        mine = {"stage": self.stage, "config": self.config}
        if marker.exists():
            theirs = json.loads(marker.read_text())
            if not same_config(theirs, mine):
                diff = first_difference(theirs, mine)
                raise ElasticLMError(f"{self.out} holds a {theirs.get('stage')} run made with another config "
                                     f"({diff}); use another --out, or delete the folder to start over")
            if result.exists():
                return json.loads(result.read_text())
        elif self.out.exists() and any(self.out.iterdir()):
            raise ElasticLMError(f"{self.out} is not empty and holds no elasticlm {self.stage} run; "
                                 f"choose another --out")
        return None

    def claim(self, dist=None) -> None:
        """Mark the folder as this run's (after every input was checked). `dist` (a `Dist`, or None for
        one process): only the main process writes; every process waits for it."""
        if (dist is None or dist.main) and not (self.out / CONFIG_FILE).exists():
            self.out.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.out / CONFIG_FILE) as tmp:
                tmp.write_text(json.dumps({"stage": self.stage, "config": self.config}, indent=2) + "\n")
        if dist is not None:
            dist.barrier()

    def finish(self, result: dict[str, Any], dist=None) -> dict[str, Any]:
        """Write `result` as the done-marker (atomically; only the main process) and return it. Call it
        after every other file of the stage is written."""
        if dist is None or dist.main:
            with atomic_file(self.out / DONE_FILE) as tmp:
                tmp.write_text(json.dumps(result, indent=2) + "\n")
        return result


def input_path(folder: str | Path, out: str | Path) -> str:
    """How a stage's config names an input folder: relative to the stage's own folder, so a run folder
    can be moved or copied whole and still resumes."""
    return os.path.relpath(Path(folder).resolve(), Path(out).resolve())


EXECUTION_ONLY = frozenset({"workers"})
"""Config keys that change how fast a stage runs, not what it computes (beyond float summation order):
a folder made with other values of them is the same run."""
ADDED_LATER = {"group_by_length": False, "augment": 0, "augment_p": 0.4, "transfer": 0, "min_steps": None}
"""Config keys added after folders were made, with the value that does what those folders did: a folder
without the key is the same run as one with that value."""


def same_config(theirs, mine) -> bool:
    """Whether a folder's claimed config `theirs` is the run `mine` asks for (JSON values), up to
    `EXECUTION_ONLY` keys and `ADDED_LATER` keys at their old behaviour."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        keys = (set(theirs) | set(mine)) - EXECUTION_ONLY
        return all(same_config(theirs[k], mine[k]) if k in theirs and k in mine
                   else k in ADDED_LATER and (theirs.get(k, mine.get(k)) == ADDED_LATER[k]) for k in keys)
    return theirs == mine


def first_difference(a, b, prefix: str = "") -> str:
    """The first key path where two JSON values differ, with both values (for a refusal message)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in EXECUTION_ONLY and not same_config({k: a[k]} if k in a else {}, {k: b[k]} if k in b else {}):
                return first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {a!r} there, {b!r} now"
