"""What a task is (`TaskSpec`), a loaded task (`TaskData`), and the built-in task registries.

The loaders (glue.py, squad.py, demo.py, userdata.py) build on these and `tasks.py` dispatches to
the loaders, so this module imports none of them: `elasticlm.data` has no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its kind, input columns, labels and metrics."""

    name: str
    kind: str  # a registered task kind's name (`elasticlm.kinds`): "classification" | "regression" | "qa"
    text_fields: tuple[str, ...]  # column names of the inputs: ("text_a",) or ("text_a", "text_b")
    label_names: tuple[str, ...] | None  # class names, index = label id; None for regression / qa
    metrics: tuple[str, ...]  # names from elasticlm.data.metrics.METRICS (qa: "exact_match", "f1")
    main_metric: str
    description: str = ""


@dataclass
class TaskData:
    """A loaded task: its spec, its splits and where they came from."""

    spec: TaskSpec
    splits: dict[str, "datasets.Dataset"]
    source: str

    def eval_split(self) -> str:
        """The split to report: `test` when it has labels (a `label` column not all -1: demo and user
        tasks), else `dev`."""
        test = self.splits.get("test")
        if (test is not None and len(test) and "label" in test.column_names
                and any(v != -1 for v in test["label"])):
            return "test"
        return "dev" if "dev" in self.splits else next(iter(self.splits))


PAIR = ("text_a", "text_b")
SINGLE = ("text_a",)

GLUE_TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        TaskSpec("cola", "classification", SINGLE, ("unacceptable", "acceptable"), ("mcc",), "mcc",
                 "grammatical acceptability"),
        TaskSpec("sst-2", "classification", SINGLE, ("negative", "positive"), ("accuracy",), "accuracy",
                 "movie review sentiment"),
        TaskSpec("mrpc", "classification", PAIR, ("not_equivalent", "equivalent"), ("f1", "accuracy"), "f1",
                 "paraphrase"),
        TaskSpec("sts-b", "regression", PAIR, None, ("pearson", "spearman"), "pearson",
                 "semantic similarity, 0-5"),
        TaskSpec("qqp", "classification", PAIR, ("not_duplicate", "duplicate"), ("f1", "accuracy"), "f1",
                 "duplicate questions"),
        TaskSpec("mnli", "classification", PAIR, ("entailment", "neutral", "contradiction"), ("accuracy",),
                 "accuracy", "natural language inference (dev = matched)"),
        TaskSpec("qnli", "classification", PAIR, ("entailment", "not_entailment"), ("accuracy",), "accuracy",
                 "question answering NLI"),
        TaskSpec("rte", "classification", PAIR, ("entailment", "not_entailment"), ("accuracy",), "accuracy",
                 "textual entailment"),
    ]
}

SQUAD_TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        TaskSpec("squad-v1.1", "qa", ("question", "context"), None, ("exact_match", "f1"), "f1",
                 "extractive QA"),
        TaskSpec("squad-v2.0", "qa", ("question", "context"), None, ("exact_match", "f1"), "f1",
                 "extractive QA with unanswerable questions"),
    ]
}

DEMO_TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in [
        TaskSpec("rt-polarity", "classification", SINGLE, ("negative", "positive"), ("accuracy", "f1"),
                 "accuracy", "Rotten Tomatoes sentence sentiment (VADER ratings, sign)"),
        TaskSpec("rt-rating", "regression", SINGLE, None, ("pearson", "spearman"), "pearson",
                 "Rotten Tomatoes sentence sentiment rating in [-4, 4]"),
        TaskSpec("bbc-topic", "classification", SINGLE,
                 ("business", "entertainment", "politics", "sport", "tech"), ("accuracy", "macro_f1"),
                 "accuracy", "BBC News article topic"),
    ]
}

def rows_to_dataset(rows: list[dict[str, Any]], spec: TaskSpec) -> "datasets.Dataset":
    """Rows of {text_a[, text_b], label} as a `datasets.Dataset` with typed columns (label: int64 class
    ids when the task names its classes, else float32 values; the `label_dtype` of the classification and
    regression kinds), so empty splits keep their schema too."""
    import datasets

    features = {field: datasets.Value("string") for field in spec.text_fields}
    features["label"] = datasets.Value("int64" if spec.label_names is not None else "float32")
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
