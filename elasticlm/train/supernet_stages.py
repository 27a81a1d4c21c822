"""The two supernet stages as one call each: `pretrain(cfg, out)` and `finetune(cfg, supernet, out)`.

Each writes its output folder (see the README): supernet.safetensors, config.json, metrics.jsonl,
tb/, checkpoints/ and, for pretraining, growth.jsonl; `result.json` is written last and marks the
stage done (a rerun into a finished folder returns it without training). Rerunning into an
unfinished folder resumes from its newest good checkpoint; a folder made with another config is
refused, so nothing is overwritten.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elasticlm.config import to_dict
from elasticlm.errors import ElasticLMError
from elasticlm.kinds import KINDS, kind_of
from elasticlm.models import carry_optimizer_state
from elasticlm.models.folder import load_supernet, save_supernet
from elasticlm.runtime import Dist, autocast
from elasticlm.stage_folder import StageFolder, input_path
from elasticlm.train.engine import Periodic, fit, fmt_time
from elasticlm.train.objectives import MLMDistill, TaskData, TaskDistill
from elasticlm.train.run_folder import truncate_jsonl
from elasticlm.train.supernet import (FinetuneConfig, PathRange, PretrainConfig, build_supernet, check_range,
                                      resolve_space, hash_seed, sample_path)

Say = Callable[[str], None]


def _say(s: str) -> None:
    print(s, file=sys.stderr, flush=True)


class Growth:
    """One PCA-guided growth round per call, widening `k` blocks; appends a line to growth.jsonl."""

    def __init__(self, net, probe: list[dict], cfg: PretrainConfig, out: Path, dist: Dist, *, k: int | None = None):
        from elasticlm.analysis.pca import default_k

        self.net, self.probe, self.cfg, self.out, self.dist = net, probe, cfg, out, dist
        self.k = k or cfg.growth.k or default_k(len(net.widths()))
        self.rounds, self.done = 0, False

    @staticmethod
    def schedule(cfg: PretrainConfig, space, total: int) -> tuple[int, int]:
        """(every, k) of a run of `total` steps: `growth.every`/`growth.k` where set, the rest derived so
        that the mean FFN width grows from d/4 to d before the last `growth.settle` share of the steps."""
        from elasticlm.analysis.pca import growth_schedule

        g = cfg.growth
        return growth_schedule(space.num_layers * len(space.candidates), space.ffn_step, space.hidden_size,
                               space.ffn_step, total, every=g.every, k=g.k, settle=g.settle)

    def state(self) -> dict:
        return {"growth_rounds": self.rounds, "growth_done": self.done}

    def restore(self, saved: dict) -> None:
        self.rounds, self.done = int(saved.get("growth_rounds", 0)), bool(saved.get("growth_done", False))

    def __call__(self, state: dict) -> dict | None:
        from elasticlm.analysis.pca import probe_scores, select_growth

        if self.done:
            return None
        net, space, g = self.net, self.net.space, self.cfg.growth
        t0 = time.time()
        before = net.widths()
        keys = None
        if self.dist.main:
            scores = probe_scores(net, self.probe, tau=g.tau, mode=g.score)
            keys = select_growth(scores, before, k=self.k, max_width=space.ffn_grid[-1],
                                 target_mean=float(space.hidden_size))
        scores, keys = self.dist.broadcast_object((scores if self.dist.main else None, keys))
        if not keys:
            self.done = True
            record = {"step": state["step"], "round": self.rounds, "stopped": True,
                      "mean_width": net.mean_ffn_width()}
        else:
            self.rounds += 1
            gen = torch.Generator().manual_seed(hash_seed(self.cfg.train.seed, "grow", self.rounds))
            for key in keys:
                replaced = net.grow_ffn(*key, before[key] + space.ffn_step, generator=gen)
                carry_optimizer_state(state["optimizer"], replaced)
            after = net.widths()
            record = {"step": state["step"], "round": self.rounds, "grown": [list(k) for k in keys],
                      "mean_width": net.mean_ffn_width(), "seconds": round(time.time() - t0, 2),
                      "blocks": [{"block": list(k), "score": round(scores[k], 5), "before": before[k],
                                  "after": after[k]} for k in before]}
        if self.dist.main:
            with open(self.out / "growth.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
        return {"growth_round": self.rounds, "mean_ffn_width": round(net.mean_ffn_width(), 2)}


# --------------------------------------------------------------------------------------------------
# Stage 1
# --------------------------------------------------------------------------------------------------


@dataclass
class Stage1:
    """What stage-1 training (and retraining's pretraining of one path) runs on."""

    net: Any
    """The supernet being trained."""
    teacher: Any
    """The encoder teacher (a `distill.teachers.Teacher`), on the training device."""
    blocks: Any
    """The packed corpus (`.train`, `.heldout`)."""
    train: Any
    """The training blocks (`blocks.train`, cut to `max_blocks`)."""
    projection: Any
    """The student→teacher hidden projections (per block or per layer, `distill.projection`; their own
    generator, seed + 2)."""
    collator: Callable
    """torch.Generator → an MLM collator (the masking draws from that generator)."""

    @classmethod
    def setup(cls, cfg: PretrainConfig, dist: Dist, *, space=None, net=None, say: Say | None = None,
              projection: str | None = None) -> "Stage1":
        """Load the teacher and the corpus, build a supernet of `space` (or train `net`), and the hidden
        projections: per `projection` ("block" or "layer"; None: `cfg.distill.projection`)."""
        from elasticlm.data.corpus import MLMCollator, packed_blocks
        from elasticlm.distill.losses import supernet_projection
        from elasticlm.distill.teachers import check_vocab, load_teacher

        space = net.space if net is not None else space
        device = cfg.train.torch_device(dist)
        teacher = load_teacher(cfg.teacher, task_kinds=KINDS.values(), dtype="bf16" if cfg.train.bf16 else "fp32",
                               device=device)
        if teacher.kind != "encoder":
            raise ElasticLMError(f"teacher {cfg.teacher} is a {teacher.kind} model; supernet pretraining needs "
                                 f"an encoder")
        check_vocab(teacher, space.vocab_size)
        blocks = dist.main_first(lambda: packed_blocks(cfg.corpus, teacher.tokenizer, cfg.max_length,
                                                       tokenizer_id=str(cfg.teacher), progress=dist.main))
        train = blocks.train
        if cfg.max_blocks:
            train = train._view(train.start, min(train.stop, train.start + cfg.max_blocks))
        if net is None:
            from elasticlm.distill.init import init_embedding

            net = build_supernet(space, fixed=cfg.growth.mode == "fixed", seed=cfg.train.seed)
            check_range(space, net.widths(), cfg.paths)
            init_embedding(net, teacher.model, cfg.embedding_init, std=cfg.embedding_std, seed=cfg.train.seed,
                           say=say if dist.main else None)
        proj = supernet_projection(space, teacher.hidden_size, projection or cfg.distill.projection,
                                   generator=torch.Generator().manual_seed(cfg.train.seed + 2))
        collator = lambda g: MLMCollator(teacher.tokenizer, cfg.mlm_probability, generator=g)  # noqa: E731
        return cls(net, teacher, blocks, train, proj, collator)


def pretrain(cfg: PretrainConfig, out: str | Path, *, say: Say = _say) -> dict[str, Any]:
    """Stage 1 (see the module docstring). Returns result.json's contents."""
    from elasticlm.data.corpus import probe_batches

    cfg.train.validate("train")
    cfg.distill.validate()
    cfg.growth.validate()
    if cfg.embedding_init not in ("teacher", "random"):
        raise ElasticLMError(f"pretrain.embedding_init={cfg.embedding_init!r}: choose teacher or random")
    if not cfg.embedding_std > 0:
        raise ElasticLMError(f"pretrain.embedding_std={cfg.embedding_std!r} must be > 0")
    out, dist = Path(out), Dist.setup()
    space = resolve_space(cfg.preset, cfg.space)
    if cfg.max_length > space.max_position_embeddings:
        raise ElasticLMError(f"max_length {cfg.max_length} exceeds the {cfg.preset} preset's "
                             f"{space.max_position_embeddings} positions")
    folder = StageFolder(out, "pretrain", to_dict(cfg))
    if (done := folder.done()) is not None:
        say(f"{out}: pretraining already complete")
        return done
    talk = say if dist.main else (lambda s: None)
    s1 = Stage1.setup(cfg, dist, space=space, say=say)
    net, teacher, blocks, train, collator = s1.net, s1.teacher, s1.blocks, s1.train, s1.collator
    folder.claim(dist)
    objective = MLMDistill(net, s1.projection, teacher, train, collator, cfg, dist)
    total = cfg.train.total_steps(len(train))
    probe = probe_batches(blocks.heldout, cfg.growth.probe_blocks)
    periodic = {}
    growth = None
    if cfg.growth.mode == "dynamic":
        every, k = Growth.schedule(cfg, space, total)
        growth = Growth(net, probe, cfg, out, dist, k=k)
        periodic["growth"] = Periodic(every, growth)
        talk(f"growth: a round of {k} blocks every {every} steps until the mean FFN width reaches d={space.hidden_size}")
    talk(f"pretraining the {cfg.preset} supernet ({len(net.widths())} blocks, {sum(p.numel() for p in net.parameters()) / 1e6:.1f}M "
         f"parameters now) on {cfg.corpus}: {len(train):,} blocks of {cfg.max_length}, {total} steps of "
         f"{cfg.train.batch_size}, teacher {cfg.teacher} ({teacher.num_layers} layers), "
         f"{'bf16' if cfg.train.bf16 else 'fp32'}, {dist.world} process(es)")
    # a resumed run redoes the growth rounds logged after its checkpoint
    _resume_logs(out, dist)
    state = fit(objective, cfg.train, out, total=total, dist=dist, periodic=periodic, say=say,
                extra_state=growth.state if growth else None, restore_state=growth.restore if growth else None)
    mlm = evaluate_mlm(net, blocks.heldout, collator, seed=cfg.train.seed, paths=3, bf16=cfg.train.bf16)
    result = {"stage": "pretrain", "steps": state["step"], "tokens": state["tokens"],
              "seconds": round(state["seconds"], 1), "growth_rounds": growth.rounds if growth else 0,
              "mean_ffn_width": net.mean_ffn_width(), "heldout": mlm}
    if dist.main:
        save_supernet(net, out, {"stage": "pretrain", "teacher": cfg.teacher, "corpus": cfg.corpus,
                                 "config": to_dict(cfg)})
    folder.finish(result, dist)
    talk(f"pretrained in {fmt_time(state['seconds'])}: {state['tokens']:,} tokens, "
         f"{result['growth_rounds']} growth rounds, mean FFN width {net.mean_ffn_width():.0f} (d={space.hidden_size}); "
         f"held-out masked-token accuracy over {len(mlm['paths'])} random paths: "
         + ", ".join(f"{p['accuracy']:.3f}" for p in mlm["paths"]))
    dist.barrier()
    return result


def _resume_logs(out: Path, dist: Dist) -> None:
    """Drop growth.jsonl lines past the checkpoint a resumed run restarts from."""
    from elasticlm.train.run_folder import find_checkpoint

    ckpt = find_checkpoint(out, ["supernet", "projection"])
    if dist.main and (out / "growth.jsonl").exists():
        step = json.loads((ckpt / "state.json").read_text())["step"] if ckpt else 0
        truncate_jsonl(out / "growth.jsonl", step)


@torch.no_grad()
def evaluate_mlm(net, heldout, collator_factory, *, seed: int, paths: int = 3, bf16: bool = True,
                 max_blocks: int = 64) -> dict[str, Any]:
    """Masked-token accuracy and loss of `paths` random paths on held-out blocks (fixed masks)."""
    was = net.training
    net.eval()
    n = min(len(heldout), max_blocks)
    batch = collator_factory(torch.Generator().manual_seed(seed))([heldout[i] for i in range(n)])
    device = net.embeddings.project.weight.device
    batch = {k: v.to(device) for k, v in batch.items()}
    res = []
    for p in range(paths):
        arch = net.space.sample(random.Random(f"{seed}:eval:{p}"), net.widths())
        with autocast(bf16, device.type):
            h = net(batch["input_ids"], arch, attention_mask=batch["attention_mask"]).last_hidden_state
            picked = batch["labels"] != -100
            logits = net.mlm_logits(h[picked]).float()
        labels = batch["labels"][picked]
        res.append({"arch": arch.short(), "params": net.space.count_params(arch).total,
                    "accuracy": float((logits.argmax(-1) == labels).float().mean()),
                    "loss": float(torch.nn.functional.cross_entropy(logits, labels))})
    net.train(was)
    return {"blocks": n, "paths": res}


# --------------------------------------------------------------------------------------------------
# Stage 2
# --------------------------------------------------------------------------------------------------


def finetune(cfg: FinetuneConfig, supernet_dir: str | Path, out: str | Path, *, say: Say = _say) -> dict[str, Any]:
    """Stage 2 (see the module docstring). Returns result.json's contents."""
    from elasticlm.distill.augment import check_augment
    from elasticlm.distill.losses import supernet_projection

    cfg.train.validate("train")
    cfg.distill.validate()
    check_augment("finetune", cfg.augment, cfg.augment_p)
    if not cfg.tasks:
        raise ElasticLMError("finetune: give at least one task")
    out, dist = Path(out), Dist.setup()
    if Path(supernet_dir).resolve() == out.resolve():
        raise ElasticLMError("finetune: --out must differ from --supernet (the pretrained supernet is kept)")
    net, sconfig = load_supernet(supernet_dir, KINDS)
    folder = StageFolder(out, "finetune", {**to_dict(cfg), "supernet": input_path(supernet_dir, out)})
    if (done := folder.done()) is not None:
        say(f"{out}: fine-tuning already complete")
        return done
    talk = say if dist.main else (lambda s: None)
    tasks, evals, lengths, sources = _load_tasks(cfg, net, dist, talk)
    check_range(net.space, net.widths(), cfg.paths)
    proj = supernet_projection(net.space, tasks[0].teacher.hidden_size, cfg.distill.projection,
                               generator=torch.Generator().manual_seed(cfg.train.seed + 2))
    folder.claim(dist)
    objective = TaskDistill(net, proj, tasks, cfg, dist)
    total = cfg.train.total_steps([len(t.train) for t in tasks])
    talk(f"fine-tuning the supernet on {', '.join(t.name for t in tasks)}: {total} steps of {cfg.train.batch_size}, "
         f"lr {cfg.train.lr:g}, {'bf16' if cfg.train.bf16 else 'fp32'}")
    state = fit(objective, cfg.train, out, total=total, dist=dist, say=say)
    scores = {t.name: evaluate_paths(net, t, evals[t.name], seed=cfg.train.seed, paths=cfg.eval_paths,
                                     bf16=cfg.train.bf16) for t in tasks}
    result = {"stage": "finetune", "steps": state["step"], "tokens": state["tokens"],
              "seconds": round(state["seconds"], 1), "tasks": scores}
    if dist.main:
        save_supernet(net, out, {"stage": "finetune", "pretrained": str(Path(supernet_dir).resolve()),
                                 "teacher": cfg.teacher, "task_teachers": {t.name: str(t.teacher.path) for t in tasks},
                                 "max_length": lengths, "task_sources": sources,
                                 "pretrain_config": sconfig.get("config"), "config": to_dict(cfg)})
    folder.finish(result, dist)
    for name, s in scores.items():
        for split, summary in s["summary"].items():
            majority = summary["majority"]
            talk(f"{name} {split}: {s['metric']} of {len(s['paths'])} random paths with inherited weights "
                 f"mean {summary['mean']:.4f} (min {summary['min']:.4f}, max {summary['max']:.4f})"
                 + (f"; majority class {majority:.4f}" if not math.isnan(majority) else ""))
        held = s["summary"].get("heldout", {})
        if not math.isnan(held.get("majority", math.nan)) and held["max"] <= held["majority"]:
            talk(f"warning: on {name} no evaluated path is above the majority class on the held-out split "
                 f"after {state['step']} steps, so the search cannot tell architectures apart; train longer "
                 f"(finetune.train.min_steps or epochs)")
    talk(f"fine-tuned in {fmt_time(state['seconds'])}")
    dist.barrier()
    return result


def _load_tasks(cfg: FinetuneConfig, net, dist: Dist, talk: Say) -> tuple[list[TaskData], dict, dict, dict]:
    """Stage 2's tasks: each one's first 90% encoded with its task teacher (fine-tuned first when not
    cached), its evaluation splits, max length and source; a task head added to `net` for each.
    Returns (tasks, evals, lengths, sources)."""
    from elasticlm.data.tasks import load_task, search_split
    from elasticlm.distill.teachers import check_vocab, load_teacher
    from elasticlm.train.teacher_finetune import TeacherFinetuneConfig, finetune_teacher, teacher_train

    tasks, evals, lengths, sources = [], {}, {}, {}
    gen = torch.Generator().manual_seed(cfg.train.seed + 3)
    for name in cfg.tasks:
        data = load_task(name, data_dir=cfg.data_dir)
        spec = data.spec
        kind = kind_of(spec)
        if "train" not in data.splits or len(data.splits["train"]) < 2:
            raise ElasticLMError(f"task {spec.name}: supernet fine-tuning needs a training split of at least 2 "
                                 f"examples ({data.source})")
        if kind.label_dtype is None and not ("dev" in data.splits and len(data.splits["dev"])):  # no labelled test
            raise ElasticLMError(f"task {spec.name}: no dev split to evaluate on ({data.source}); add dev-v"
                                 f"{spec.name.removeprefix('squad-v')}.json (or a *dev*.json) beside the training file")
        tcfg = TeacherFinetuneConfig(teacher=cfg.teacher, task=name, data_dir=cfg.data_dir,
                                     train=teacher_train(epochs=cfg.teacher_epochs, precision=cfg.train.precision))
        tres = dist.main_first(lambda: finetune_teacher(tcfg, progress=dist.main))
        teacher = load_teacher(str(tres.path), task_kinds=KINDS.values(), dtype="bf16" if cfg.train.bf16 else "fp32",
                               device=cfg.train.torch_device(dist))
        check_vocab(teacher, net.space.vocab_size)
        max_length = cfg.max_length or int(teacher.task_info.get("max_length") or tcfg.resolved_max_length(spec))
        max_length = min(max_length, net.space.max_position_embeddings)
        lengths[spec.name] = max_length
        sources[spec.name] = str(Path(name).resolve()) if Path(name).is_dir() else name
        fit_part, held = search_split(data.splits["train"])  # QA: by example, before windowing
        if cfg.max_train_examples:
            fit_part = fit_part.select(range(min(cfg.max_train_examples, len(fit_part))))
        pad_id = teacher.tokenizer.pad_token_id or 0
        encoded = kind.encode(fit_part, spec, teacher.tokenizer, max_length)
        if cfg.augment > 0:
            encoded = _with_copies(encoded, kind, teacher, cfg, talk)
        tasks.append(TaskData(spec.name, spec, encoded, teacher, pad_id))
        splits = {"heldout": held}
        if "dev" in data.splits and len(data.splits["dev"]):
            splits["dev"] = data.splits["dev"]
        cut = lambda ds: ds.select(range(min(cfg.max_eval_examples, len(ds)))) if cfg.max_eval_examples else ds  # noqa: E731
        evals[spec.name] = {k: (kind.eval_rows(cut(v), spec, teacher.tokenizer, max_length), teacher.tokenizer,
                                max_length) for k, v in splits.items()}  # QA: raw examples, windowed when scored
        net.add_task_head(spec.name, kind, kind.num_labels(spec), generator=gen)
        unit = f", {len(tasks[-1].train):,} {kind.unit}" if kind.fills_window else ""
        talk(f"task {spec.name}: {len(fit_part):,} training examples (first 90%{unit}), {len(held):,} held out for "
             f"search; teacher {tres.path.name} "
             f"({', '.join(f'{k} {v}' for k, v in tres.metrics.get('dev', {}).items())})")
    return tasks, evals, lengths, sources


def _with_copies(encoded, kind, teacher, cfg: FinetuneConfig, talk: Say):
    """`encoded` followed by `cfg.augment` word-swapped copies of each row, labelled -100 (the teacher,
    run on every batch, is their only target); unchanged, with a line saying so, for a task kind
    without classes."""
    from elasticlm.distill.augment import concatenated, copies_dataset

    if not kind.classes:
        talk(f"finetune.augment={cfg.augment}: augmented copies are for classification tasks; this {kind.name} "
             f"task trains on its own rows only")
        return encoded
    extra = copies_dataset(encoded, teacher, cfg.augment, p=cfg.augment_p, seed=cfg.train.seed)
    talk(f"{len(extra):,} augmented copies (words swapped for neighbours in the teacher's embedding space, "
         f"p={cfg.augment_p}) added to fine-tuning, distilled from the teacher only")
    return concatenated(encoded, extra)


def evaluate_paths(net, task: TaskData, splits: dict[str, Any], *, seed: int, paths: int, bf16: bool) -> dict:
    """The task metric of `paths` random paths (inherited weights, the supernet's task head) on each
    split, plus the majority-class rate of that split (classification). A split is (what the task kind's
    `eval_rows` keeps of it, tokenizer, max_length); QA examples are windowed once, scored as EM/F1 per example."""
    from elasticlm.train.evaluation import Batches, path_metrics

    device = net.embeddings.project.weight.device
    spec = task.spec
    archs = [sample_path(net.space, net.widths(), seed, -1 - p, PathRange()) for p in range(paths)]
    out = {"metric": spec.main_metric, "paths": [{"arch": a.short(), "params": net.space.count_params(a).total}
                                                 for a in archs], "summary": {}}
    for split, ds in splits.items():
        rows, tokenizer, max_length = ds
        batches = Batches.for_task(spec, rows, pad_id=task.pad_id, tokenizer=tokenizer, max_length=max_length,
                                   batch_size=128, device=device)  # padded once for every path
        vals = []
        for arch, rec in zip(archs, out["paths"]):
            rec[split] = path_metrics(net, arch, task.name, batches, spec, bf16=bf16)
            vals.append(rec[split][spec.main_metric])
        majority = _majority(spec, batches.references)
        out["summary"][split] = {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals)),
                                 "majority": majority}
    return out


def _majority(spec, refs: np.ndarray) -> float:
    """The main metric of always predicting the most frequent training class (accuracy = its share)."""
    if not kind_of(spec).classes:
        return float("nan")
    counts = np.bincount(refs.astype(int), minlength=kind_of(spec).num_labels(spec))
    return float(counts.max() / max(1, counts.sum()))
