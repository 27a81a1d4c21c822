"""Retraining (docs: README, "Retraining"): a final architecture as a standalone model, trained on the
task's full training split with the task teacher, evaluated on dev and test.

A model starts from the supernet where shapes match (`from_supernet`: the path's weights and the
supernet's task head; an FFN wider than the supernet's block is first grown function-preservingly),
or from scratch (`from_scratch`, seeded). Training is one `fit` of the engine with `RetrainTask`: task
loss + logit distillation from the task teacher, plus attention/hidden losses when their weights are
non-zero. With only the logit loss the teacher's logits are computed once for the whole split
(`teacher_logits`) and every model trained in a run reuses them, so a retrained model costs its own
forward and backward passes only.

A model folder is an HF `save_pretrained` folder (+ tokenizer) with the engine's run files beside it
and `result.json` (params, dev, test metrics) written last as its done-marker.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from elasticlm.config import to_dict
from elasticlm.data.batching import pad_batch, row_lengths, rows_of
from elasticlm.distill.augment import check_augment
from elasticlm.distill.transfer import check_transfer
from elasticlm.distill.losses import DistillConfig, HiddenProjection, layer_map
from elasticlm.errors import ElasticLMError
from elasticlm.kinds import KINDS, kind_of
from elasticlm.io import save_arrays
from elasticlm.run_layout import RunLayout
from elasticlm.runtime import Dist
from elasticlm.space import Architecture, SearchSpace
from elasticlm.stage_folder import StageFolder
from elasticlm.train.engine import TrainConfig, fit, step_rows
from elasticlm.train.evaluation import Batches, model_predictions
from elasticlm.train.objectives import Distiller

Say = Callable[[str], None]


@dataclass
class RetrainConfig:
    """Retraining of a final architecture (and of the baselines, with the same recipe)."""

    task: str = "rt-polarity"
    """Task name or dataset folder."""
    teacher: str = "all-minilm-l6-v2"
    """Base teacher; its task-fine-tuned copy (cached; fine-tuned first when missing) is distilled."""
    teacher_epochs: float = 1.0
    """Epochs of task-teacher fine-tuning when it is not cached yet."""
    data_dir: str | None = None
    """Where GLUE TSVs / SQuAD JSON are (None: built-in sources)."""
    init: str = "supernet"
    """"supernet" (inherit the path's weights where shapes match) or "scratch"."""
    max_length: int | None = None
    """Tokens per example; None = the task teacher's."""
    max_train_examples: int | None = None
    """Train on the first N training examples only (quick runs and tests)."""
    max_eval_examples: int | None = None
    """Evaluate on the first N rows of dev and test only."""
    embedding_init: str = "teacher"
    """A from-scratch model's token embedding: "teacher" (the task teacher's, projected onto its top-e
    principal components) or "random"."""
    embedding_std: float = 0.05
    """Standard deviation the teacher-initialised embedding is scaled to."""
    scratch_pretrain: bool = True
    """In `elasticlm run`/`compare`: a from-scratch model (uniform-bert, or every model with init=scratch)
    is first pretrained along its own path with the supernet's stage-1 recipe and token budget (its
    steps, batch, learning rate and losses), so that no baseline is handicapped by its recipe."""
    pretrain_steps: int = 0
    """Steps of MLM + distillation pretraining on the corpus before task training, for every model
    (0: none; the supernet's own pretraining is what an inherited model starts from)."""
    pretrain_lr: float = 1e-4
    """Peak learning rate of that pretraining."""
    pretrain_batch_size: int = 256
    """Corpus blocks per pretraining step."""
    corpus: str = "demo"
    """Pretraining text (set by the run's top-level corpus)."""
    augment: int = 0
    """Augmented copies of each training example (words swapped for embedding neighbours), labelled by
    the teacher's logits only (classification with logit distillation; 0: none)."""
    augment_p: float = 0.4
    """Probability that a word of an augmented copy is swapped."""
    transfer: int = 0
    """Lines of the corpus (`corpus`; none equal to a text of the task) added to the training rows,
    labelled by the teacher only (single-sentence classification; 0: none)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """One retraining per seed; metrics are reported as mean ± std over them."""
    workers: int = 1
    """Models (and seeds) retrained at once, in forked processes that split the CPU threads (CPU only;
    `elasticlm.runtime.run_jobs`): a few-million-parameter model's steps are too small to keep 2 cores
    busy, so 2 workers finish a run's 4 models sooner. Numbers change only by float summation order."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4, batch_size=32, epochs=3.0,
                                                                   checkpoint_every=500, log_every=20))
    distill: DistillConfig = field(default_factory=lambda: DistillConfig(alpha_attn=0.0, alpha_hidden=0.0))

    def validate(self) -> None:
        if self.init not in ("supernet", "scratch"):
            raise ElasticLMError(f"retrain.init must be 'supernet' or 'scratch', got {self.init!r}")
        if self.embedding_init not in ("teacher", "random"):
            raise ElasticLMError(f"retrain.embedding_init={self.embedding_init!r}: choose teacher or random")
        if not self.embedding_std > 0:
            raise ElasticLMError(f"retrain.embedding_std={self.embedding_std!r} must be > 0")
        if not self.seeds:
            raise ElasticLMError("retrain.seeds: give at least one seed")
        if self.workers < 1:
            raise ElasticLMError(f"retrain.workers={self.workers!r} must be >= 1")
        check_augment("retrain", self.augment, self.augment_p)
        check_transfer("retrain", self.transfer)
        d = self.distill
        for name in ("augment", "transfer"):
            if getattr(self, name) and not (d.alpha_logit > 0 or d.alpha_attn > 0 or d.alpha_hidden > 0):
                raise ElasticLMError(f"retrain.{name}={getattr(self, name)} needs a teacher loss: its rows have no "
                                     f"label; set distill.alpha_logit (or alpha_attn / alpha_hidden) > 0, or {name}=0")
        self.train.validate("retrain.train")
        self.distill.validate()


@dataclass
class RetrainData:
    """A task encoded for retraining, with its teacher."""

    spec: Any
    train: Any
    """The encoded full training split (QA: its examples' windowed features)."""
    dev: Any
    """The encoded dev split (QA: its raw examples, windowed when scored)."""
    test: Any | None
    """The encoded labelled test split, if any (QA: none)."""
    tokenizer: Any
    teacher: Any
    pad_id: int
    max_length: int
    teacher_logits: np.ndarray | None = None
    """Teacher logits of every training row (when only the logit loss needs the teacher): n×C, or
    n×width×2 start/end logits for QA windows."""
    teacher_metrics: dict = field(default_factory=dict)

    def batches(self, split: str, device) -> Batches:
        """The dev or test split padded once on `device` for `evaluate_model`."""
        return Batches.for_task(self.spec, self.dev if split == "dev" else self.test, pad_id=self.pad_id,
                                tokenizer=self.tokenizer, max_length=self.max_length,
                                batch_size=kind_of(self.spec).eval_batch_size, device=device)


def prepare_task(cfg: RetrainConfig, *, vocab_size: int | None = None, say: Say = print,
                 targets: bool = True, max_positions: int | None = None) -> RetrainData:
    """Load and encode the task, fine-tune (or reuse) its teacher, and precompute teacher logits
    (and augmented copies) unless `targets` is False (nothing left to train). QA windows are cut to
    at most `max_positions` tokens (the student's position embeddings)."""
    from elasticlm.data.tasks import load_task
    from elasticlm.distill.teachers import check_vocab, load_teacher
    from elasticlm.train.teacher_finetune import TeacherFinetuneConfig, finetune_teacher, teacher_train

    data = load_task(cfg.task, data_dir=cfg.data_dir)
    spec = data.spec
    kind = kind_of(spec)
    if "train" not in data.splits or not len(data.splits["train"]):
        raise ElasticLMError(f"task {spec.name} has no training split ({data.source}); add one")
    if "dev" not in data.splits or not len(data.splits["dev"]):
        raise ElasticLMError(f"task {spec.name} has no dev split to evaluate on ({data.source}); add one")
    tcfg = TeacherFinetuneConfig(teacher=cfg.teacher, task=cfg.task, data_dir=cfg.data_dir,
                                 train=teacher_train(epochs=cfg.teacher_epochs, precision=cfg.train.precision))
    tres = finetune_teacher(tcfg)
    device = cfg.train.torch_device()
    teacher = load_teacher(str(tres.path), task_kinds=KINDS.values(), dtype="bf16" if cfg.train.bf16 else "fp32",
                           device=device)
    if vocab_size is not None:
        check_vocab(teacher, vocab_size)
    max_length = cfg.max_length or int(teacher.task_info.get("max_length") or tcfg.resolved_max_length(spec))
    if kind.fills_window and max_positions is not None:
        max_length = min(max_length, max_positions)  # QA windows fill the window
    enc = lambda ds: kind.encode(ds, spec, teacher.tokenizer, max_length)  # noqa: E731
    train = data.splits["train"]
    if cfg.max_train_examples:
        train = train.select(range(min(cfg.max_train_examples, len(train))))
    cut = lambda ds: ds.select(range(min(cfg.max_eval_examples, len(ds)))) if cfg.max_eval_examples else ds  # noqa: E731
    test = data.splits["test"] if data.eval_split() == "test" else None
    evaluate = lambda ds: kind.eval_rows(ds, spec, teacher.tokenizer, max_length)  # noqa: E731
    out = RetrainData(spec, enc(train), evaluate(cut(data.splits["dev"])),
                      evaluate(cut(test)) if test is not None else None,
                      teacher.tokenizer, teacher, teacher.tokenizer.pad_token_id or 0, max_length,
                      teacher_metrics=tres.metrics)
    if targets and cfg.distill.alpha_logit > 0 and cfg.distill.alpha_attn == 0 and cfg.distill.alpha_hidden == 0:
        say(f"teacher logits for {len(out.train):,} training {kind.unit} (computed once, shared by every model)")
        out.teacher_logits = teacher_logits(teacher, out.train, out.pad_id, bf16=cfg.train.bf16, device=device)
    if targets and cfg.augment > 0 and not kind.classes:
        say(f"retrain.augment={cfg.augment}: augmented copies are for classification tasks; this {kind.name} "
            f"task retrains on its own rows only")
    elif targets and cfg.augment > 0:
        from elasticlm.distill.augment import copies_dataset

        aug = copies_dataset(out.train, teacher, cfg.augment, p=cfg.augment_p, seed=cfg.train.seed)
        _append_teacher_rows(out, aug, f"augmented training examples (words swapped for neighbours in the "
                                       f"teacher's embedding space, p={cfg.augment_p})", cfg, device, say)
    if targets and cfg.transfer > 0:
        if not kind.classes or len(spec.text_fields) != 1:
            raise ElasticLMError(f"retrain.transfer={cfg.transfer}: corpus lines serve single-sentence "
                                 f"classification only, and {spec.name} is not; set transfer=0")
        from elasticlm.data.corpus import load_corpus_texts
        from elasticlm.distill.transfer import MIN_WORDS, normalised, transfer_dataset, transfer_lines

        task_texts = {normalised(t) for ds in data.splits.values() for t in ds[spec.text_fields[0]]}
        lines = transfer_lines(load_corpus_texts(cfg.corpus), cfg.transfer, exclude=task_texts, seed=0)
        if not lines:
            raise ElasticLMError(f"retrain.transfer: corpus {cfg.corpus!r} has no line of {MIN_WORDS}+ words that is "
                                 f"not a text of {spec.name}; use another corpus or transfer=0")
        _append_teacher_rows(out, transfer_dataset(lines, teacher.tokenizer, max_length),
                             f"lines of corpus {cfg.corpus!r} (none a text of the task)", cfg, device, say)
    return out


def _append_teacher_rows(data: RetrainData, extra, what: str, cfg: RetrainConfig, device, say: Say) -> None:
    """Append rows labelled -100 (no task loss; the teacher's output is their only target) to the
    training rows. With precomputed teacher logits their logits are appended too; otherwise the
    teacher runs on every batch (attention or hidden-state distillation) and labels them there."""
    from elasticlm.distill.augment import concatenated

    online = data.teacher_logits is None
    labelled = "the teacher on every batch" if online else "the teacher's logits"
    say(f"{len(extra):,} {what}, labelled by {labelled}")
    if not online:
        logits = teacher_logits(data.teacher, extra.with_format("torch"), data.pad_id, bf16=cfg.train.bf16,
                                device=device)
        data.teacher_logits = np.concatenate([data.teacher_logits, logits])
    data.train = concatenated(data.train, extra)


def teacher_logits(teacher, ds, pad_id: int, *, bf16: bool, device) -> np.ndarray:
    """The teacher's logits for every row of `ds`, in row order: n×C."""
    batches = Batches.build(ds, pad_id, batch_size=128, device=device)
    return batches.predict(lambda b: teacher(b["input_ids"], b["attention_mask"], b["token_type_ids"],
                                             want_attentions=False, want_hidden=False).logits, bf16=bf16)


def path_net(net, arch: Architecture, task: str | None = None, spec=None):
    """`net` ready to carry `arch`: blocks narrower than the architecture asks are grown
    (function-preservingly, on a copy), and a head for `task` is added when it has none."""
    widths = net.widths()
    grow = [(l, c) for l, c in enumerate(arch) if c.ffn_dim > widths[(l, c.kind, c.sharing)]]
    if grow or (task is not None and task not in net.task_heads):
        net = copy.deepcopy(net)
    gen = torch.Generator().manual_seed(0)
    for l, c in grow:
        net.grow_ffn(l, c.kind, c.sharing, c.ffn_dim, generator=gen)
    if task is not None and task not in net.task_heads:
        net.add_task_head(task, kind_of(spec), kind_of(spec).num_labels(spec), generator=gen)
    return net


def scratch_net(space: SearchSpace, arch: Architecture, spec, task: str, *, seed: int, teacher_model=None,
                cfg: RetrainConfig | None = None, say: Say | None = None):
    """A fresh supernet (weights depend only on `seed`) ready to carry `arch`, with a head for `task`:
    a from-scratch model is its path, so it can be pretrained exactly like an inherited one. Its token
    embedding starts from `teacher_model`'s when `cfg.embedding_init` says so."""
    from elasticlm.distill.init import init_embedding
    from elasticlm.train.supernet import build_supernet

    net = build_supernet(space, fixed=False, seed=seed,
                         task_heads={task: {"kind": spec.kind, "num_labels": kind_of(spec).num_labels(spec)}})
    if cfg is not None and teacher_model is not None:
        init_embedding(net, teacher_model, cfg.embedding_init, std=cfg.embedding_std, seed=seed, say=say)
    return path_net(net, arch)


def build_model(net, arch: Architecture, task: str, cfg: RetrainConfig, pretrain_out: Path, *, say: Say = print,
                pretrain=None):
    """The standalone model (its task kind's model class) for `arch` from the path of `net` (see
    `path_net`), pretrained on the corpus first with `pretrain` (a `PretrainConfig`; its
    `train.max_steps` steps), or with `cfg.pretrain_steps` > 0 steps of `cfg`'s own pretraining recipe."""
    net = path_net(net, arch, task)
    pretrain = pretrain or (retrain_pretraining(cfg, net.space) if cfg.pretrain_steps > 0 else None)
    if pretrain is not None:
        net = copy.deepcopy(net)
        pretrain_path(net, arch, pretrain, pretrain_out, say=say)
        net.cpu()
    return net.extract(arch, head=net.task_heads[task].task_kind.extract_head, task=task)


def retrain_pretraining(cfg: RetrainConfig, space: SearchSpace):
    """The pretraining `cfg.pretrain_steps` asks for: MLM + distillation on `cfg.corpus` at
    `cfg.pretrain_lr`, `cfg.pretrain_batch_size` blocks a step."""
    from elasticlm.train.supernet import PretrainConfig

    return PretrainConfig(corpus=cfg.corpus, teacher=cfg.teacher, max_length=min(128, space.max_position_embeddings),
                          train=replace(cfg.train, lr=cfg.pretrain_lr, max_steps=cfg.pretrain_steps, epochs=1.0,
                                        batch_size=cfg.pretrain_batch_size),
                          distill=DistillConfig(kind=cfg.distill.kind))


def pretrain_path(net, arch: Architecture, pcfg, out: Path, *, say: Say = print) -> None:
    """MLM + distillation on the corpus along one fixed path of `net` (so exactly the standalone model's
    weights train) with `pcfg` (a `PretrainConfig`, `pcfg.train.max_steps` steps; no growth) into `out`
    (resumable; skipped when done)."""
    from safetensors.torch import load_file

    from elasticlm.models.folder import save_supernet
    from elasticlm.train.objectives import MLMDistill
    from elasticlm.train.supernet_stages import Stage1

    steps = pcfg.train.max_steps
    if not steps or steps <= 0:
        raise ElasticLMError(f"pretraining a path needs train.max_steps > 0, got {steps!r}")
    folder = StageFolder(out, "retrain-pretrain", {**to_dict(pcfg), "arch": arch.to_list()})
    if folder.done() is not None:
        net.load_state_dict(load_file(str(out / "supernet.safetensors")))
        return
    dist = Dist.setup()
    s1 = Stage1.setup(pcfg, dist, net=net, projection="layer")  # one path: one projection per layer
    folder.claim(dist)
    net.to(pcfg.train.torch_device(dist))
    say(f"pretraining {arch.short()} on {pcfg.corpus}: {steps} steps of {pcfg.train.batch_size}")
    objective = MLMDistill(net, s1.projection, s1.teacher, s1.train, s1.collator, pcfg, dist, arch=arch)
    fit(objective, pcfg.train, out, total=steps, dist=dist, say=say)
    if dist.main:
        save_supernet(net, out, {"stage": "retrain-pretrain", "arch": arch.to_list()})
    folder.finish({"stage": "retrain-pretrain", "steps": steps}, dist)
    dist.barrier()


class RetrainTask:
    """The retraining objective: task loss + distillation from the task teacher."""

    def __init__(self, model, data: RetrainData, cfg: RetrainConfig, train: TrainConfig, dist: Dist):
        self.model, self.data, self.cfg, self.train_cfg, self.dist = model, data, cfg, train, dist
        d = cfg.distill
        self.modules = {"model": model}
        L = model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers") else len(model.config.architecture)
        self.proj = None
        if d.alpha_hidden > 0:
            self.proj = HiddenProjection(L, model.config.hidden_size, data.teacher.hidden_size,
                                         generator=torch.Generator().manual_seed(train.seed + 2))
            self.modules["projection"] = self.proj
        self.lmap = layer_map(L, data.teacher.num_layers)
        self.distiller = Distiller(d, self.proj, self.lmap, dist)  # one path: one projection per layer
        self.needs_teacher = self.distiller.wants_teacher or (d.alpha_logit > 0 and data.teacher_logits is None)
        self.lengths = row_lengths(data.train) if train.group_by_length else None

    def state(self) -> dict:
        """What a checkpoint keeps beside the weights (the calibrated classic attention weight)."""
        return self.distiller.state()

    def restore(self, saved: dict) -> None:
        self.distiller.restore(saved)

    def batch(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        rows = step_rows(len(self.data.train), self.train_cfg, step, micro, self.dist, lengths=self.lengths)
        b = pad_batch(rows_of(self.data.train, rows), self.data.pad_id)
        if self.data.teacher_logits is not None:
            b["teacher_logits"] = torch.as_tensor(self.data.teacher_logits[rows])
        return b

    def losses(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        d, kd = self.cfg.distill, self.distiller
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        out = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types,
                         output_attentions=kd.wants_attentions, output_hidden_states=kd.wants_hidden)
        kind = kind_of(self.data.spec)
        logits = kind.logits(out)  # B×C, or B×N×2 (QA), ...
        losses = {"task": kind.loss(logits, batch)}
        t_out = None
        if self.needs_teacher:
            with torch.no_grad():
                t_out = kd.teacher(self.data.teacher, ids, mask, types)
        if d.alpha_logit > 0:
            t_logits = batch["teacher_logits"] if "teacher_logits" in batch else t_out.logits
            losses["logit"] = kind.distill_loss(logits, t_logits.to(logits.device), mask, d)
        if t_out is not None and kd.wants_teacher:
            losses.update(kd.representation(out, t_out, mask))
        return kd.total(losses)


def retrain_folder(out: str | Path, cfg: RetrainConfig, *, seed: int, run_config: dict) -> StageFolder:
    """The stage folder `retrain_model` trains seed `seed` into (to check or claim it beforehand)."""
    return StageFolder(Path(out), "retrain", {**run_config, "seed": seed, "retrain": to_dict(cfg)})


def retrain_model(model, data: RetrainData, cfg: RetrainConfig, out: str | Path, *, seed: int,
                  run_config: dict, say: Say = print) -> dict:
    """Train `model` (one seed) into `out`, evaluate on dev/test, save; skipped when done."""
    out = Path(out)
    folder = retrain_folder(out, cfg, seed=seed, run_config=run_config)
    if (done := folder.done()) is not None:
        say(f"{out}: already retrained{teacher_note(done, data.teacher_metrics)}")
        return done
    dist = Dist.setup()
    folder.claim(dist)
    train = replace(cfg.train, seed=seed)
    device = train.torch_device(dist)
    model.to(device)
    total = train.total_steps(len(data.train))
    state = fit(RetrainTask(model, data, cfg, train, dist), train, out, total=total, dist=dist, say=say)
    model.eval()
    result = {"stage": "retrain", "params": int(sum(p.numel() for p in model.elasticlm.parameters())),
              "params_with_head": int(sum(p.numel() for p in model.parameters())), "seed": seed,
              "steps": state["step"], "seconds": round(state["seconds"], 1)}
    if data.teacher_metrics:  # which task teacher taught it (a cache may hold another fine-tune)
        result["teacher"] = {k: data.teacher_metrics[k] for k in ("dev", "test") if k in data.teacher_metrics}
    arrays = {}
    for split in ("dev", "test") if data.test is not None else ("dev",):
        batches = data.batches(split, device)
        preds = model_predictions(model, batches, data.spec, bf16=train.bf16)
        result[split] = batches.metrics(data.spec, preds)
        if len(batches.references) == len(preds):  # one prediction a labelled example (not QA windows)
            arrays.update({split: preds, f"{split}_labels": batches.references})
    if dist.main:
        if arrays:
            save_arrays(RunLayout.predictions(out), arrays)
        model.save_pretrained(out)
        data.tokenizer.save_pretrained(out)
    folder.finish(result, dist)
    dist.barrier()
    return result


def teacher_note(result: dict, teacher_metrics: dict) -> str:
    """"; note: ..." when a reused model's `result` was taught by another fine-tune of the task teacher than
    the one with `teacher_metrics` (the cache keeps whichever fine-tune was made first, and bf16
    fine-tuning is not bit-reproducible), else ""."""
    brief = lambda m: " / ".join(f"{s} {next(iter(m[s].values())) * 100:.1f}" for s in ("dev", "test") if m.get(s))  # noqa: E731
    was, now = result.get("teacher"), {k: teacher_metrics[k] for k in ("dev", "test") if k in teacher_metrics}
    if not was or not now or was == now:
        return ""
    return (f"; note: it was taught by another fine-tune of the task teacher ({brief(was)}) than the cached one "
            f"now ({brief(now)}), so set it beside models taught now with care")


def summarize(results: list[dict]) -> dict:
    """Mean (and std over seeds) of each split's metrics: the `metrics.json` entry of one model."""
    out: dict[str, Any] = {"params": results[0]["params"], "seeds": len(results)}
    for split in ("dev", "test"):
        if all(split in r for r in results):
            names = results[0][split]
            out[split] = {k: float(np.mean([r[split][k] for r in results])) for k in names}
            if len(results) > 1:
                out.setdefault("std", {})[split] = {k: float(np.std([r[split][k] for r in results], ddof=1))
                                                   for k in names}
                out.setdefault("per_seed", {})[split] = {k: [float(r[split][k]) for r in results] for k in names}
    return out
