"""Reading a run folder's files for the report, leniently.

Every reader returns None when its file is missing, and also when the file cannot be read as what it
should be (a torn write, a run of another version): the report then skips that section and says
why, instead of failing on the rest. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticlm.run_layout import RunLayout

RUN = RunLayout()  # paths relative to the run folder


def rel(path: Path) -> str:
    """A `RUN` path as the relative name the readers below take."""
    return path.as_posix()


# The files the report draws from (relative to the run folder). A folder holding none of them and no
# run_config.json is not a run folder.
REPORT_FILES: tuple[str, ...] = tuple(p.as_posix() for p in (
    RUN.supernet / "growth.jsonl", RUN.done(RUN.supernet), RUN.done(RUN.supernet_ft),
    RUN.search / "generations.jsonl", RUN.search / "pareto.json", RUN.done(RUN.search), RUN.heads / "cka.npz",
    RUN.heads / "heads.json", RUN.arch, RUN.metrics, RUN.ablation / "ablation.json",
    RUN.ablation / "similarity.json", Path("ablation.json"), Path("similarity.json"),
))


@dataclass
class RunFiles:
    """A run folder and the problems met while reading it."""

    root: Path
    """The run folder."""
    problems: dict[str, str] = field(default_factory=dict)
    """Relative path -> why it was present but unreadable (said in the section that needed it)."""

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def json(self, rel: str, kind: type = dict) -> Any:
        """The JSON value of `rel` if it is a `kind`, else None (a reason kept in `problems`)."""
        path = self.root / rel
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            self.problems[rel] = f"not valid JSON ({err.__class__.__name__})"
            return None
        if not isinstance(value, kind):
            self.problems[rel] = f"expected a JSON {kind.__name__}, got {type(value).__name__}"
            return None
        return value

    def jsonl(self, rel: str) -> list[dict] | None:
        """The object lines of `rel`; a torn or foreign line ends the read (what came before is kept)."""
        path = self.root / rel
        if not path.is_file():
            return None
        lines = []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            self.problems[rel] = f"unreadable ({err.__class__.__name__})"
            return None
        for raw in text.splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                break
            if not isinstance(line, dict):
                break
            lines.append(line)
        if not lines:
            self.problems[rel] = "holds no complete line yet"
            return None
        return lines

    def npz(self, rel: str) -> dict | None:
        """{name: array} of an .npz file (no pickles), or None."""
        import numpy as np

        path = self.root / rel
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: np.asarray(data[k]) for k in data.files}
        except (OSError, ValueError) as err:
            self.problems[rel] = f"not a readable .npz ({err.__class__.__name__})"
            return None

    def first(self, *rels: str) -> str:
        """The first of `rels` that exists (else the first): where a file may live in two places."""
        return next((rel for rel in rels if self.exists(rel)), rels[0])

    def missing(self, *rels: str) -> str:
        """The one-line reason a section is skipped: the first of `rels` that is absent or unreadable."""
        for rel in rels:
            if rel in self.problems:
                return f"`{rel}` is {self.problems[rel]}"
            if not self.exists(rel):
                return f"no `{rel}` in this run"
        return "its files hold nothing to draw"


def number(value: Any) -> float | None:
    """`value` as a finite float, or None (missing, NaN, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
