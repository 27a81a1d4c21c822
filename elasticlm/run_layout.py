"""The paths of a run folder (`elasticlm run --out RUN`), named once (torch-free: the report reads them).

    RUN/
      run_config.json   the resolved config of the whole run (its claim)
      supernet/         stage 1: supernet pretraining        (each stage folder: run_config.json,
      supernet-ft/      stage 2: supernet fine-tuning         ..., result.json last)
      search/           evolution (or NSGA-II), plus the random-search baseline
      heads/            head-number search on the best architecture
      arch.json         the final architecture
      pretrain/NAME/seed-K/   retraining's pretraining of one path (when asked for)
      models/NAME/      the retrained model NAME (first seed); models/NAME/seed-K/ for the others
      tfidf/            the TF-IDF + logistic regression baseline
      predictions/      dev/test predictions of the teacher, majority and TF-IDF (retrained models keep
                        theirs in models/NAME/predictions.npz)
      metrics.json      every model: params, latency, dev and test metrics (mean ± std over seeds)
      significance.json found against every other model: paired differences with 95% bootstrap intervals
      export/           the found model as a self-contained HF folder
      rank-check/       `elasticlm rank-check`: ranking.json (supernet fitness vs retrained metric), the
                        retrained models/ARCH/seed-K/ (and pretrain/ARCH/seed-K/ for from-scratch runs)
      report.md         the report; its figures in report/
      timings.json      seconds per stage

`RunLayout(root)` gives each as a path under `root`; `RunLayout()` gives them relative to the run folder
(what the report's readers take).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from elasticlm.stage_folder import CONFIG_FILE, DONE_FILE


@dataclass(frozen=True)
class RunLayout:
    """Where each file and folder of a run folder lives."""

    root: Path = field(default_factory=Path)
    """The run folder (the default, `Path()`, gives the paths relative to it)."""

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def supernet(self) -> Path:
        return self.root / "supernet"

    @property
    def supernet_ft(self) -> Path:
        return self.root / "supernet-ft"

    @property
    def search(self) -> Path:
        return self.root / "search"

    @property
    def heads(self) -> Path:
        return self.root / "heads"

    @property
    def arch(self) -> Path:
        return self.root / "arch.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str, seed: int | None = None) -> Path:
        """The retraining folder of model `name`: models/NAME/ for the first seed (`seed` None), else
        models/NAME/seed-K/."""
        return self.models / name if seed is None else self.models / name / f"seed-{seed}"

    def path_pretrain(self, name: str, seed: int) -> Path:
        """Retraining's pretraining of model `name`'s path, seed `seed`."""
        return self.root / "pretrain" / name / f"seed-{seed}"

    def model_latency(self, name: str) -> Path:
        """Model `name`'s measured latency (kept so a rerun does not measure again)."""
        return self.model(name) / "latency.json"

    @property
    def teacher_latency(self) -> Path:
        return self.models / "teacher-latency.json"

    @property
    def tfidf(self) -> Path:
        return self.root / "tfidf"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def significance(self) -> Path:
        return self.root / "significance.json"

    @staticmethod
    def predictions(folder: Path) -> Path:
        """A retrained model folder's dev/test predictions (logits or values, in split order, with labels)."""
        return folder / "predictions.npz"

    def reference_predictions(self, name: str) -> Path:
        """Dev/test predictions of a model that is not retrained: teacher, majority, tfidf-logreg."""
        return self.root / "predictions" / f"{name}.npz"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def report_figures(self) -> Path:
        return self.root / "report"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    @property
    def ablation(self) -> Path:
        return self.root / "ablation"

    @property
    def rank_check(self) -> Path:
        """`elasticlm rank-check`'s default folder."""
        return self.root / "rank-check"

    @property
    def ranking(self) -> Path:
        """rank-check's result in its default folder (the report reads it)."""
        return self.ranking_file(self.rank_check)

    @staticmethod
    def ranking_file(folder: Path) -> Path:
        """A rank-check folder's ranking.json: every fitness's Kendall τ against the retrained metric."""
        return Path(folder) / "ranking.json"

    @staticmethod
    def rank_model(folder: Path, name: str, seed: int) -> Path:
        """A rank-check folder's retraining of architecture `name` (its `arch_name`) with seed `seed`."""
        return Path(folder) / "models" / name / f"seed-{seed}"

    @staticmethod
    def rank_pretrain(folder: Path, name: str, seed: int) -> Path:
        """A rank-check folder's pretraining of a from-scratch architecture's path."""
        return Path(folder) / "pretrain" / name / f"seed-{seed}"

    @property
    def growth(self) -> Path:
        """Stage 1's growth log: every block's PCA score and width per round."""
        return self.supernet / "growth.jsonl"

    @property
    def generations(self) -> Path:
        return self.search / "generations.jsonl"

    @property
    def pareto(self) -> Path:
        return self.search / "pareto.json"

    @property
    def heads_json(self) -> Path:
        return self.heads / "heads.json"

    @property
    def cka(self) -> Path:
        return self.heads / "cka.npz"

    @property
    def export_info(self) -> Path:
        return self.export / "export.json"

    @staticmethod
    def stage_config(folder: Path) -> Path:
        """A supernet stage folder's config.json (space, widths, task heads, the training config)."""
        return folder / "config.json"

    @staticmethod
    def done(folder: Path) -> Path:
        """A stage folder's done-marker (its result)."""
        return folder / DONE_FILE
