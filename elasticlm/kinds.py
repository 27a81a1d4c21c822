"""Task kinds (README: "Adding a task kind"): what a task's `kind` means for every stage, in one object.

A `TaskSpec` names its kind as a string ("classification", "regression", "qa"; the string is what the
JSON files keep); `kind_of(spec)` returns the registered `TaskKind` object, which owns everything that
differs between kinds: the label count and column type, encoding a split for a model, what evaluation
keeps of a split and how it scores predictions, the supernet's task head and the standalone model class
it is extracted into (and the transformers Auto class of a teacher with that head), the task loss and the
logit distillation against a teacher.

Adding a kind is one `TaskKind` subclass plus `register(MyKind())`. The layers below this module
(`data/`, `models/`, `distill/`) never look a kind up by name: their callers hand them the kind object
(`SuperNet.add_task_head`, `load_teacher(task_kinds=...)`). This module imports nothing heavy at import
time (torch, datasets, the models are imported inside the methods).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticlm.errors import ElasticLMError


class TaskKind:
    """What one kind of task needs from each stage; subclass it and `register` an instance."""

    name: str = ""
    """The kind's name, as `TaskSpec.kind` and the JSON files spell it."""
    unit: str = "examples"
    """What a training row is, in log lines ("examples"; QA: "windows" of long contexts)."""
    fills_window: bool = False
    """Rows fill the model's window (QA windows): their length is capped by the student's positions."""
    classes: bool = False
    """Each example gets one of the spec's `label_names`: the majority-class and TF-IDF baselines and
    teacher-labelled augmented copies (retrain `augment`) apply."""
    eval_batch_size: int = 256
    """Rows per evaluation batch."""
    extract_head: str = ""
    """The `SuperNet.extract(head=...)` name of the standalone model a task head is extracted into."""
    head_parts: tuple[str, ...] = ()
    """Sub-modules of the task head copied into the standalone model on extraction (same names)."""
    auto_class: str = ""
    """The transformers Auto class of a teacher with this kind's head ("": none, no teacher fine-tuning)."""
    label_dtype: str | None = "int64"
    """The `datasets` type of a split's label column (None: no label column, e.g. QA)."""
    default_max_length: int | None = None
    """Teacher fine-tuning's tokens per row when not configured (None: 64, or 128 for text pairs)."""

    def num_labels(self, spec) -> int:
        """Output units of the task head."""
        raise NotImplementedError

    def encode(self, ds, spec, tokenizer, max_length: int, *, stride: int | None = None):
        """A split as a model trains on it: tokenized rows in torch format (with their targets)."""
        raise NotImplementedError

    def eval_rows(self, ds, spec, tokenizer, max_length: int):
        """What evaluation keeps of a split (`scoring_rows` turns it into rows to score)."""
        return self.encode(ds, spec, tokenizer, max_length)

    def scoring_rows(self, spec, rows, *, tokenizer=None, max_length: int | None = None,
                     stride: int | None = None) -> tuple[Any, Any]:
        """(encoded rows to run the model on, a scorer `metrics` gets back; None when the rows' labels do).
        `stride`: overlap of windows cut from long rows (QA; None: the kind's default)."""
        return rows, None

    def head(self, hidden_size: int, num_labels: int, pooling: str):
        """A fresh supernet task head: B×N×d hidden states (+ B×N mask) -> the kind's logits."""
        raise NotImplementedError

    def model_class(self):
        """The standalone HF model class a task head is extracted into."""
        from elasticlm.models.modeling import HEADS

        return HEADS[self.extract_head]

    def model_config(self, head) -> dict[str, Any]:
        """`ElasticLMConfig` keyword arguments of the standalone model for the supernet `head`."""
        return {}

    def is_head_of(self, config) -> bool:
        """Whether a saved HF model with `config` carries this kind's head (a fine-tuned task teacher)."""
        return False

    def teacher_kwargs(self, spec) -> dict[str, Any]:
        """`from_pretrained` keyword arguments of a teacher about to be fine-tuned on `spec`."""
        return {}

    def auto_model(self, path, spec=None, **load):
        """The HF model saved at `path` with this kind's head (`auto_class`); with `spec`, a new head for
        that task (`teacher_kwargs`: labels, problem type) to fine-tune."""
        import transformers

        if not self.auto_class:
            raise ElasticLMError(f"task kind {self.name}: no transformers Auto class (auto_class) to load or "
                                 f"fine-tune a teacher with its head")
        extra = self.teacher_kwargs(spec) if spec is not None else {}
        return getattr(transformers, self.auto_class).from_pretrained(path, **load, **extra)

    def logits(self, out):
        """A standalone model's (or teacher's) output as one tensor, the supernet head's layout."""
        return out.logits

    def loss(self, logits, batch: dict):
        """The batch's task loss, in fp32."""
        raise NotImplementedError

    def distill_loss(self, s, t, mask, cfg):
        """Logit distillation of student logits `s` towards the teacher's `t` (`DistillConfig` cfg)."""
        from elasticlm.distill.losses import logit_loss

        return logit_loss(s, t, kind=cfg.kind, temperature=cfg.temperature)

    def metrics(self, spec, preds, references, scorer) -> dict[str, float]:
        """The task's metrics (0-1 fractions) of `preds` against `references` (+ `scorer`, what
        `scoring_rows` returned), in the split's order."""
        raise NotImplementedError

    def teacher_metrics(self, spec, preds, references, scorer) -> dict[str, float]:
        """The metrics a fine-tuned teacher's metrics.json keeps (QA: the official percentages)."""
        return self.metrics(spec, preds, references, scorer)

    def fractions(self, teacher_metrics: dict[str, float]) -> dict[str, float]:
        """`teacher_metrics` as 0-1 fractions, like every other metric (QA: the percentages / 100)."""
        return teacher_metrics

    def balance(self, spec, ds) -> str:
        """What a raw split holds, for `elasticlm data` (e.g. the class counts), as " (...)" or ""."""
        return ""

    def __deepcopy__(self, memo) -> "TaskKind":
        """A kind holds no state: copies of a model (whose task heads name their kind) share it."""
        return self


class _Sequence(TaskKind):
    """One output per example from a pooled [CLS]/mean vector (classification and regression)."""

    extract_head = "classification"
    head_parts = ("pooler", "classifier")
    auto_class = "AutoModelForSequenceClassification"

    def encode(self, ds, spec, tokenizer, max_length: int, *, stride: int | None = None):
        from elasticlm.data.tasks import encode_task

        return encode_task(ds, spec, tokenizer, max_length)

    def head(self, hidden_size: int, num_labels: int, pooling: str):
        from elasticlm.models.supernet import PooledHead

        return PooledHead(hidden_size, num_labels, pooling)

    def model_config(self, head) -> dict[str, Any]:
        return {"num_labels": head.num_labels, "classifier_pooling": head.pooling}

    @staticmethod
    def _regression_head(config) -> bool | None:
        """None: no sequence head; else whether it is a regression head."""
        if "ForSequenceClassification" not in " ".join(getattr(config, "architectures", None) or []):
            return None
        return config.problem_type == "regression" or config.num_labels == 1

    def teacher_kwargs(self, spec) -> dict[str, Any]:
        labels = spec.label_names or ("score",)
        return {"num_labels": self.num_labels(spec), "id2label": dict(enumerate(labels)),
                "label2id": {n: i for i, n in enumerate(labels)}}


class Classification(_Sequence):
    """One of `label_names` per example: cross-entropy, accuracy/F1/MCC."""

    name = "classification"
    classes = True

    def num_labels(self, spec) -> int:
        assert spec.label_names is not None
        return len(spec.label_names)

    def is_head_of(self, config) -> bool:
        return self._regression_head(config) is False

    def teacher_kwargs(self, spec) -> dict[str, Any]:
        return {**super().teacher_kwargs(spec), "problem_type": "single_label_classification"}

    def metrics(self, spec, preds, references, scorer) -> dict[str, float]:
        from elasticlm.data.metrics import class_metrics

        return class_metrics(spec, preds, references)

    def balance(self, spec, ds) -> str:
        """Class counts and shares."""
        from collections import Counter

        labels = ds["label"]
        counts = Counter(labels)
        if set(counts) == {-1}:
            return " (unlabelled)"
        parts = [f"{spec.label_names[i]} {counts[i]:,} ({100 * counts[i] / len(labels):.1f}%)"
                 for i in range(self.num_labels(spec)) if counts.get(i)]
        return " (" + ", ".join(parts) + ")"

    def loss(self, logits, batch: dict):
        """Cross-entropy on B×C logits, averaged over the labelled rows (label -100, a teacher-labelled
        augmented copy, has no task loss); 0 for a batch with none (not NaN, as a plain mean would be)."""
        import torch.nn.functional as F

        labels = batch["labels"].long()
        total = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
        return total / (labels != -100).sum().clamp(min=1)


class Regression(_Sequence):
    """One real number per example: MSE, Pearson/Spearman."""

    name = "regression"
    label_dtype = "float32"

    def num_labels(self, spec) -> int:
        return 1

    def model_config(self, head) -> dict[str, Any]:
        return {**super().model_config(head), "problem_type": "regression"}

    def is_head_of(self, config) -> bool:
        return self._regression_head(config) is True

    def teacher_kwargs(self, spec) -> dict[str, Any]:
        return {**super().teacher_kwargs(spec), "problem_type": "regression"}

    def metrics(self, spec, preds, references, scorer) -> dict[str, float]:
        from elasticlm.data.metrics import value_metrics

        return value_metrics(spec, preds, references)

    def balance(self, spec, ds) -> str:
        """Label mean, spread and range."""
        import statistics

        labels = ds["label"]
        if all(v == -1 for v in labels):
            return " (unlabelled)"
        return (f" (label mean {statistics.fmean(labels):.3f}, sd {statistics.pstdev(labels):.3f}, "
                f"range {min(labels):.2f}..{max(labels):.2f})")

    def loss(self, logits, batch: dict):
        """MSE of the B×1 outputs."""
        import torch.nn.functional as F

        return F.mse_loss(logits.float().squeeze(-1), batch["labels"].float())


@dataclass
class QASplit:
    """The SQuAD examples of a split whose windows the rows of a `Batches` are (SpanQA's scorer)."""

    examples: list[dict]
    """SQuAD examples (id, context, question, answers), in split order."""
    index: Any
    """`squad.SpanIndex` of the features (example of each window, token offsets)."""
    version_2: bool
    """SQuAD v2.0 scoring (no-answer predictions, HasAns/NoAns breakdowns)."""

    def metrics(self, preds) -> dict[str, float]:
        """preds: n_features×width×2 start/end logits -> exact_match, f1 (+ v2.0's HasAns_/NoAns_
        breakdowns) as 0–1 fractions (the official percentages / 100, like every other metric here)."""
        from elasticlm.data import squad

        return squad.as_fractions(self.percentages(preds))

    def percentages(self, preds) -> dict[str, float]:
        """The official SQuAD scores (0–100) of the best span per example (cached teachers keep these)."""
        from elasticlm.data import squad

        answers = squad.postprocess(self.examples, self.index, preds[..., 0], preds[..., 1], version_2=self.version_2)
        return squad.squad_metrics(answers, self.examples, version_2=self.version_2)


QA_COLUMNS = ["input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"]


class SpanQA(TaskKind):
    """Extractive QA (SQuAD): long contexts cut into overlapping windows, a start/end logit per token;
    evaluation picks the best span per example over its windows and scores EM/F1."""

    name = "qa"
    unit = "windows"
    fills_window = True
    eval_batch_size = 128
    extract_head = "qa"
    head_parts = ("qa_outputs",)
    auto_class = "AutoModelForQuestionAnswering"
    label_dtype = None
    default_max_length = 384

    def num_labels(self, spec) -> int:
        return 2

    def is_head_of(self, config) -> bool:
        return "ForQuestionAnswering" in " ".join(getattr(config, "architectures", None) or [])

    def encode(self, ds, spec, tokenizer, max_length: int, *, stride: int | None = None):
        """The examples' windowed features (torch columns: ids, mask, segments, start/end positions)."""
        from elasticlm.data import squad

        stride = squad.window_stride(max_length) if stride is None else stride
        feats = squad.prepare_features(ds, tokenizer, max_length=max_length, stride=stride)
        return feats.with_format("torch", columns=QA_COLUMNS)

    def eval_rows(self, ds, spec, tokenizer, max_length: int):
        """The raw examples: windowed when scored."""
        return list(ds)

    def scoring_rows(self, spec, rows, *, tokenizer=None, max_length: int | None = None,
                     stride: int | None = None) -> tuple[Any, QASplit]:
        if tokenizer is None or max_length is None:
            raise ElasticLMError(f"task {spec.name}: QA batches need the tokenizer and max_length")
        return self.windows(rows, tokenizer, max_length, stride=stride, version_2=spec.name.endswith("v2.0"))

    @staticmethod
    def windows(examples, tokenizer, max_length: int, *, stride: int | None, version_2: bool) -> tuple[Any, QASplit]:
        """`examples` windowed into `max_length`-token features, and the `QASplit` that scores them."""
        from elasticlm.data import squad

        examples = list(examples)
        stride = squad.window_stride(max_length) if stride is None else stride
        feats = squad.prepare_features(examples, tokenizer, max_length=max_length, stride=stride)
        return feats, QASplit(examples, squad.SpanIndex.of(feats), version_2)

    def head(self, hidden_size: int, num_labels: int, pooling: str):
        from elasticlm.models.supernet import SpanHead

        return SpanHead(hidden_size)

    def logits(self, out):
        """Start/end logits stacked B×N×2 (the supernet head's layout)."""
        import torch

        return torch.stack([out.start_logits, out.end_logits], dim=-1)

    def loss(self, logits, batch: dict):
        return span_loss(logits, batch["start_positions"], batch["end_positions"])

    def distill_loss(self, s, t, mask, cfg):
        """Span logits per window (B×N×2; a teacher's wider precomputed B×width×2 is cut to the student's N)."""
        return qa_logit_loss(s, t[:, :s.shape[1]], mask, kind=cfg.kind, temperature=cfg.temperature)

    def metrics(self, spec, preds, references, scorer) -> dict[str, float]:
        if scorer is None:
            raise ElasticLMError(f"task {spec.name}: QA needs batches built by Batches.for_qa")
        return scorer.metrics(preds)

    def teacher_metrics(self, spec, preds, references, scorer) -> dict[str, float]:
        return scorer.percentages(preds)

    def fractions(self, teacher_metrics: dict[str, float]) -> dict[str, float]:
        from elasticlm.data.squad import as_fractions

        return as_fractions(teacher_metrics)

    def balance(self, spec, ds) -> str:
        """Contexts and unanswerable questions."""
        impossible = sum(ds["is_impossible"])
        return f" ({len(set(ds['context'])):,} contexts, {impossible:,} without answer)"


def span_loss(logits, start, end):
    """QA: mean of the start and end cross-entropies over the positions, in fp32.
    logits B×N×2 (start, end); start, end: B target token indices (0 = [CLS], no answer here)."""
    import torch.nn.functional as F

    logits = logits.float()
    return 0.5 * (F.cross_entropy(logits[..., 0], start.long()) + F.cross_entropy(logits[..., 1], end.long()))


def qa_logit_loss(s, t, mask, *, kind: str, temperature: float):
    """Logit distillation of span logits: `logit_loss` on each window's start-logit row and on its end-
    logit row, each taken over the window's real (unpadded) positions only, averaged over the windows
    and the two.

    s, t: B×N×2 (student, teacher); mask: B×N, 1 = real token (a row's real tokens come first, as
    `pad_batch` lays them out). Rows of equal real length go through `logit_loss` together, so the
    result is the exact mean of the per-window losses."""
    import torch

    from elasticlm.distill.losses import logit_loss

    lengths = mask.long().sum(-1)  # B
    total, B = s.new_zeros((), dtype=torch.float32), s.shape[0]
    for n in torch.unique(lengths).tolist():
        rows = (lengths == n).nonzero().squeeze(-1)  # windows of n real tokens
        for j in (0, 1):  # start, end
            part = logit_loss(s[rows, :n, j], t[rows, :n, j].to(s.device), kind=kind, temperature=temperature)
            total = total + part * (0.5 * len(rows) / B)
    return total


KINDS: dict[str, TaskKind] = {}
"""The registered task kinds by name."""


def register(kind: TaskKind) -> TaskKind:
    """Make `kind` known by its name (replacing a kind of the same name); returns it."""
    if not kind.name:
        raise ElasticLMError(f"{type(kind).__name__}: a task kind needs a name")
    KINDS[kind.name] = kind
    return kind


def kind_named(name: str) -> TaskKind:
    """The registered kind called `name`."""
    if name not in KINDS:
        raise ElasticLMError(f"unknown task kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[name]


def kind_of(spec) -> TaskKind:
    """The kind object of a `TaskSpec`."""
    return kind_named(spec.kind)


def compute_metrics(task, predictions, references) -> dict[str, float]:
    """Score `predictions` against `references` with the metrics of `task` (a `TaskSpec` or a task's
    name) by its kind: {metric name: value} in the order of `spec.metrics`. Classification and regression
    inputs and checks: `elasticlm.data.metrics`."""
    if isinstance(task, str):
        from elasticlm.data.tasks import get_spec

        task = get_spec(task)
    return kind_of(task).metrics(task, predictions, references, None)


for _kind in (Classification(), Regression(), SpanQA()):
    register(_kind)
