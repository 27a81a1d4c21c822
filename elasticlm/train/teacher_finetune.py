"""Task-teacher fine-tuning: put the task kind's head (classification, regression, QA, ...) on a teacher, fine-tune it
on a task, score it on the dev (and labelled test) split, and cache it.

The result lives in ``cache_root()/teachers/<teacher>--<task>--<hash>/`` where ``<hash>`` is a short
hash of the full configuration, so asking again for the same configuration returns the cached teacher
without training (``cached=True``). The folder is written atomically (built in a temporary sibling and
renamed), so an interrupted or failed run leaves nothing a later run would trust. It holds::

    config.json, model.safetensors     the fine-tuned model (save_pretrained)
    tokenizer files                    the teacher's tokenizer
    metrics.json                       dev/test metrics, steps, timing
    finetune_config.json               the TeacherFinetuneConfig used
    elasticlm_teacher.json             what `load_teacher` needs to know: task, kind, labels, base

`elasticlm.distill.teachers.load_teacher(path)` loads it as a `Teacher` with a task head.

Training runs on the one training engine (`elasticlm.train.engine.fit`): fused AdamW with weight
decay off for biases and norms, linear warm-up then linear decay, bf16 autocast (fp32 option),
gradient clipping at 1.0. Its checkpoints go to ``cache_root()/work/teachers/<name>/`` (outside
``teachers/``), so a killed fine-tune resumes where it stopped; the folder is removed once the
teacher is saved.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from elasticlm.config import to_dict
from elasticlm.data.batching import pad_batch, row_lengths, rows_of
from elasticlm.data.cache import cache_key, cache_root, fingerprint
from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_dir
from elasticlm.kinds import TaskKind, kind_of
from elasticlm.runtime import Dist
from elasticlm.train.engine import TrainConfig, fit, step_rows
from elasticlm.train.evaluation import Batches, model_inputs

log_module = logging.getLogger(__name__)

__all__ = ["TeacherFinetuneConfig", "FinetuneResult", "finetune_teacher", "finetune_dir"]


@dataclass
class TeacherFinetuneConfig:
    """Settings for fine-tuning a task teacher. Every field that shapes the teacher enters the cache key
    (`_config_key`; not the fine-tune's own logging and checkpointing fields of `train`)."""

    teacher: str = "all-minilm-l6-v2"
    """Teacher to fine-tune: an offline alias, a hub id or a local folder (see `ensure_teacher`)."""
    task: str = "rt-polarity"
    """Task name (`elasticlm.data.tasks`) or a user dataset folder."""
    data_dir: str | None = None
    """Where the task's files are (GLUE TSV root, SQuAD JSON); None for the built-in/hub sources."""
    train: TrainConfig = field(default_factory=lambda: teacher_train())
    """How the teacher is optimised (`teacher_train()`: lr 5e-5, 1 epoch of batches of 32 sequences or QA
    features; BERT-base task teachers use 3 epochs at lr 3e-5). Its log_every, checkpoint_every,
    keep_checkpoints and progress are the fine-tune's own (a line every ~5% of the steps, `progress=`)."""
    max_length: int | None = None
    """Max tokens per input; None = 64 for single-sentence tasks, 128 for sentence pairs, 384 for QA."""
    doc_stride: int = 128
    """QA only: overlap between the windows of a long context."""
    max_train_examples: int | None = None
    """Use only the first N training rows (quick runs and tests)."""
    max_eval_examples: int | None = None
    """Score only the first N rows of each evaluation split (quick runs and tests)."""
    eval_batch_size: int = 64
    """Batch size for evaluation."""
    attn_implementation: str = "auto"
    """"eager", "sdpa" or "auto" (eager under bf16 on CPU, where SDPA's backward is ~2x slower)."""

    @property
    def use_bf16(self) -> bool:
        """`train.precision` resolved on this machine (auto: bf16 where it runs faster)."""
        return self.train.bf16

    def resolved_max_length(self, spec) -> int:
        """`max_length`, or its task-dependent default."""
        if self.max_length is not None:
            return int(self.max_length)
        return kind_of(spec).default_max_length or (128 if len(spec.text_fields) > 1 else 64)

    def validate(self) -> None:
        """Raise `ElasticLMError` naming the first bad field."""
        self.train.validate("teacher fine-tuning config, train")
        checks = [
            ("max_length", self.max_length is None or self.max_length >= 8, "must be >= 8"),
            ("max_train_examples", self.max_train_examples is None or self.max_train_examples > 0,
             "must be > 0"),
            ("max_eval_examples", self.max_eval_examples is None or self.max_eval_examples > 0,
             "must be > 0"),
            ("attn_implementation", self.attn_implementation in ("auto", "eager", "sdpa"),
             "must be auto, eager or sdpa"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ElasticLMError(f"teacher fine-tuning config: {name}={getattr(self, name)!r} {why}")


def teacher_train(**changes) -> TrainConfig:
    """Teacher fine-tuning's training defaults (`TrainConfig` with lr 5e-5), with `changes` made."""
    return replace(TrainConfig(lr=5e-5), **changes)


@dataclass
class FinetuneResult:
    """Where the fine-tuned teacher is, its metrics (as in metrics.json) and whether it was cached."""

    path: Path
    metrics: dict[str, Any]
    cached: bool


# --------------------------------------------------------------------------------------------------
# Cache key
# --------------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", text).strip("_.")[:60] or "x"


def _canonical(cfg: TeacherFinetuneConfig) -> tuple[str, str]:
    """(teacher, task) spelled one way: offline aliases for teacher hub ids, registry names for
    tasks (`SST2` → `sst-2`), absolute paths for local folders."""
    from elasticlm.data.tasks import canonical_name as task_name
    from elasticlm.distill.fetch import canonical_name as teacher_name

    teacher, task = str(cfg.teacher), str(cfg.task)
    if Path(teacher).expanduser().exists():
        teacher = str(Path(teacher).expanduser().resolve())
    else:
        teacher = teacher_name(teacher) or teacher
    if Path(task).expanduser().is_dir():
        task = str(Path(task).expanduser().resolve())
    else:
        task = task_name(task) or task
    return teacher, task


def _config_key(cfg: TeacherFinetuneConfig) -> dict[str, Any]:
    """The configuration as hashed, with teacher/task/data_dir spelled canonically, plus the content
    fingerprint (size and mtime of each file) of a local task folder or data_dir: editing the data
    gives a new key, never the stale teacher. The training settings enter as the flat fields of the
    config before it had a `train` (`bf16`: None/True/False for precision auto/bf16/fp32), plus those it
    had no field for when they differ from `teacher_train()`, so teachers cached then are found again."""
    key = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name != "train"}
    t, default = cfg.train, teacher_train()
    key.update(epochs=t.epochs, max_steps=t.max_steps, lr=t.lr, batch_size=t.batch_size, warmup_ratio=t.warmup_ratio,
               weight_decay=t.weight_decay, seed=t.seed, bf16={"auto": None, "bf16": True, "fp32": False}[t.precision])
    key.update({name: getattr(t, name) for name in ("grad_accum", "max_grad_norm", "device")
                if getattr(t, name) != getattr(default, name)})
    key["teacher"], key["task"] = _canonical(cfg)
    if key["data_dir"] is not None and Path(key["data_dir"]).expanduser().exists():
        key["data_dir"] = str(Path(key["data_dir"]).expanduser().resolve())
        key["data_dir_content"] = fingerprint(key["data_dir"])
    if Path(key["task"]).is_absolute():
        key["task_content"] = fingerprint(key["task"])
    else:
        from elasticlm.data.spec import DEMO_TASKS

        if key["task"] in DEMO_TASKS:  # built from registry packages by code that may change
            from elasticlm.data.demo import TASKS_VERSION

            key["task_version"] = TASKS_VERSION
    return key


def finetune_dir(cfg: TeacherFinetuneConfig) -> Path:
    """The cache folder of the task teacher that `cfg` produces."""
    key = _config_key(cfg)
    digest = cache_key(key, 10)
    teacher, task = (_slug(Path(v).name if Path(v).is_absolute() else v) for v in (key["teacher"], key["task"]))
    return cache_root() / "teachers" / f"{teacher}--{task}--{digest}"


# --------------------------------------------------------------------------------------------------
# The objective (the loop itself is the training engine's `fit`)
# --------------------------------------------------------------------------------------------------


def _task_loss(kind: TaskKind, out, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The kind's task loss (e.g. cross-entropy, MSE, mean start/end cross-entropy), computed in fp32
    from the head's outputs."""
    return kind.loss(kind.logits(out), batch)


class TaskObjective:
    """Supervised task loss on a teacher with a task head, for `elasticlm.train.engine.fit`."""

    def __init__(self, model, train_ds, kind: TaskKind, pad_id: int, train: TrainConfig):
        self.model, self.train_ds, self.kind, self.pad_id, self.train = model, train_ds, kind, pad_id, train
        self.modules = {"model": model}

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        lengths = row_lengths(self.train_ds) if self.train.group_by_length else None
        return pad_batch(rows_of(self.train_ds, step_rows(len(self.train_ds), self.train, step, micro, Dist(),
                                                          lengths=lengths)), self.pad_id)

    def losses(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        out = self.model(**model_inputs(self.model, batch))
        return {"loss": _task_loss(self.kind, out, batch)}


@dataclass
class TeacherJob:
    """A task teacher's fine-tune, set up: the task, its encoded splits and the model with its head."""

    spec: Any
    """The task's `TaskSpec`."""
    kind: TaskKind
    source: str
    """Where the task's data came from."""
    teacher_path: Path
    """The base teacher's folder."""
    tokenizer: Any
    max_length: int
    train_raw: Any
    """The training examples (before encoding)."""
    train_ds: Any
    """The encoded training rows (QA: windows)."""
    eval_ds: dict[str, tuple]
    """Split -> (rows, scorer): QA windows and the examples they score."""
    model: Any
    pad_id: int


def finetune_teacher(cfg: TeacherFinetuneConfig, *, progress: bool = True,
                     log: Callable[[str], None] | None = None) -> FinetuneResult:
    """Fine-tune `cfg.teacher` on `cfg.task` (or return the cached result) — see the module docstring.

    Args:
        cfg: the configuration; all of it enters the cache key.
        progress: print a line every ~5% of the steps (loss, learning rate, throughput, ETA).
        log: where progress lines go (default: stderr).
    """
    cfg.validate()
    final = finetune_dir(cfg)
    if (final / "metrics.json").exists():  # the done-marker, written last into the atomic folder
        return FinetuneResult(final, json.loads((final / "metrics.json").read_text()), cached=True)
    say = (log or (lambda s: print(s, file=sys.stderr, flush=True))) if progress else (lambda s: None)
    t_start = time.time()
    job = _setup(cfg, say, progress)
    work = cache_root() / "work" / "teachers" / final.name
    state = _fit(job, cfg, work, say, progress)
    metrics, info = _validate(job, cfg, state, say, t_start)
    _save(final, job, cfg, metrics, info)
    shutil.rmtree(work, ignore_errors=True)
    say(f"saved {final}")
    return FinetuneResult(final, metrics, cached=False)


def _setup(cfg: TeacherFinetuneConfig, say: Callable[[str], None], progress: bool) -> TeacherJob:
    """Load the task and the base teacher, encode the splits, and put the kind's head on the teacher."""
    from elasticlm.data.tasks import load_task
    from elasticlm.distill.fetch import quiet_transformers, ensure_teacher, load_tokenizer

    teacher_path = ensure_teacher(cfg.teacher)
    data = load_task(cfg.task, data_dir=cfg.data_dir)
    spec = data.spec
    kind = kind_of(spec)
    if "train" not in data.splits or len(data.splits["train"]) == 0:
        raise ElasticLMError(f"task {spec.name}: no training split ({data.source})")
    tokenizer = load_tokenizer(str(teacher_path))
    max_length = cfg.resolved_max_length(spec)
    if getattr(tokenizer, "model_max_length", 0) and 0 < tokenizer.model_max_length < max_length:
        max_length = tokenizer.model_max_length

    # ---- data ------------------------------------------------------------------------------------
    def head(ds, n):
        return ds.select(range(min(n, len(ds)))) if n is not None else ds

    train_raw = head(data.splits["train"], cfg.max_train_examples)
    eval_names = _eval_splits(data)
    if not eval_names:
        (say if progress else log_module.warning)(
            f"warning: task {spec.name} has no labelled dev or test split ({data.source}), so this fine-tune "
            f"measures nothing; add a dev file, or labels to the test file")
    eval_raw = {name: head(data.splits[name], cfg.max_eval_examples) for name in eval_names}
    train_ds = kind.encode(train_raw, spec, tokenizer, max_length, stride=cfg.doc_stride)
    eval_ds = {n: kind.scoring_rows(spec, kind.eval_rows(ds, spec, tokenizer, max_length), tokenizer=tokenizer,
                                    max_length=max_length, stride=cfg.doc_stride)
               for n, ds in eval_raw.items()}  # (rows, scorer): QA windows and the examples they score

    # ---- model -----------------------------------------------------------------------------------
    attn = cfg.attn_implementation
    if attn == "auto":
        attn = "eager" if cfg.use_bf16 else "sdpa"
    with torch.random.fork_rng(), quiet_transformers():  # the head's initialisation depends on the seed only
        torch.manual_seed(cfg.train.seed)
        model = kind.auto_model(teacher_path, spec, attn_implementation=attn, dtype=torch.float32)
    if model.config.pad_token_id is None:  # causal backbones need it to find the last token
        model.config.pad_token_id = tokenizer.pad_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return TeacherJob(spec, kind, data.source, teacher_path, tokenizer, max_length, train_raw, train_ds, eval_ds,
                      model, pad_id)


def _fit(job: TeacherJob, cfg: TeacherFinetuneConfig, work: Path, say: Callable[[str], None],
         progress: bool) -> dict[str, Any]:
    """Train on the engine; a killed run resumes from its work folder. Returns the engine's state."""
    spec, kind, train_ds = job.spec, job.kind, job.train_ds
    steps_per_epoch = math.ceil(len(train_ds) / cfg.train.batch_size)
    total = cfg.train.max_steps or max(1, math.ceil(cfg.train.epochs * steps_per_epoch))
    say(f"fine-tuning {cfg.teacher} on {spec.name} ({spec.kind}): {len(train_ds)} training "
        f"{kind.unit}, {total} steps of {cfg.train.batch_size}, "
        f"lr {cfg.train.lr:g}, max_length {job.max_length}, {'bf16' if cfg.use_bf16 else 'fp32'}")
    train = replace(cfg.train, max_steps=total, precision="bf16" if cfg.use_bf16 else "fp32",
                    log_every=max(1, total // 20), checkpoint_every=max(50, total // 4), keep_checkpoints=1,
                    progress=progress)
    try:
        return fit(TaskObjective(job.model, train_ds, kind, job.pad_id, train), train, work, total=total, say=say)
    except ElasticLMError as err:
        raise ElasticLMError(f"teacher fine-tuning diverged: {err}; lower --lr (now {cfg.train.lr:g})") from None


def _validate(job: TeacherJob, cfg: TeacherFinetuneConfig, state: dict[str, Any], say: Callable[[str], None],
              t_start: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics.json, elasticlm_teacher.json): the scores on every labelled split, and what loading needs."""
    spec, model = job.spec, job.model
    model.eval()
    step, train_seconds = state["step"], state["seconds"]
    seen = step * cfg.train.batch_size
    results: dict[str, Any] = {}
    for name, (rows, scorer) in job.eval_ds.items():
        results[name] = _evaluate(model, rows, scorer, spec, cfg, job.pad_id)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in results[name].items())
        say(f"{name}: {shown}")

    metrics = {
        "teacher": cfg.teacher,
        "task": spec.name,
        "kind": spec.kind,
        "main_metric": spec.main_metric,
        **results,
        "steps": step,
        "epochs": round(seen / len(job.train_ds), 3),
        "train_examples": len(job.train_raw),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t_start, 1),
    }
    info = {
        "task": spec.name,
        "task_source": job.source,
        "kind": spec.kind,
        "task_head": spec.kind,
        "label_names": list(spec.label_names) if spec.label_names else None,
        "num_labels": kind_of(spec).num_labels(spec),
        "metrics": list(spec.metrics),
        "main_metric": spec.main_metric,
        "base_teacher": cfg.teacher,
        "base_teacher_path": str(job.teacher_path),
        "max_length": job.max_length,
    }
    return metrics, info


def _save(final: Path, job: TeacherJob, cfg: TeacherFinetuneConfig, metrics: dict, info: dict) -> None:
    """The teacher's cache folder, written atomically with metrics.json (the done-marker) last."""
    with atomic_dir(final) as tmp:
        job.model.save_pretrained(tmp, safe_serialization=True)
        job.tokenizer.save_pretrained(tmp)
        (tmp / "finetune_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
        (tmp / "elasticlm_teacher.json").write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")  # written last


def _eval_splits(data) -> list[str]:
    """Labelled evaluation splits to score: dev, plus test when it is labelled (demo/user tasks)."""
    names = [n for n in ("dev",) if n in data.splits and len(data.splits[n])]
    if data.eval_split() == "test":
        names.append("test")
    return names


@torch.no_grad()
def _evaluate(model, rows, scorer, spec, cfg: TeacherFinetuneConfig, pad_id: int) -> dict[str, float]:
    """Task metrics of a model on the rows its kind scores (`scoring_rows`), as metrics.json keeps them
    (`teacher_metrics`; QA: the official SQuAD percentages, 0-100, as cached teachers always stored them)."""
    kind = kind_of(spec)
    batches = Batches.build(rows, pad_id, batch_size=cfg.eval_batch_size, device=next(model.parameters()).device,
                            scorer=scorer)
    was = model.training
    model.eval()
    preds = batches.predict(lambda b: kind.logits(model(**model_inputs(model, b))), bf16=cfg.use_bf16)
    model.train(was)
    return kind.teacher_metrics(spec, preds, batches.references, scorer)
