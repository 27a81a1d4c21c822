"""The one training engine: teacher fine-tuning, both supernet stages and retraining run through `fit`.

    setup  -> an objective (what is trained, how a step's batch is built, what the losses are)
    fit    -> one plain loop: batch -> losses -> backward (accumulated) -> all-reduce -> clip -> step,
              with periodic work inline (growth, evaluation, checkpoint) where `itstime` says so
    resume -> rebuild the objective, load the weights of the newest good `step-N/` checkpoint (the
              supernet widens grown FFNs itself), build the optimizer, load its state, go on

An objective is any object with
    modules: dict[str, nn.Module]        trained and checkpointed (one safetensors file each)
    batch(step, micro) -> dict           this rank's micro-batch `micro` of optimizer step `step`
    losses(batch, step) -> dict          named scalar losses; "loss" is the one minimised
and optionally
    state() -> dict, restore(saved)      what its checkpoints keep beside the weights (state.json)
Everything random in a step is derived from (seed, step), never from global RNG state, so a resumed
run and every data-parallel rank see the same paths and masks as an uninterrupted one.

Run folder written by `fit` (see `run_folder.py`; a stage adds its own files beside these):
    metrics.jsonl        one JSON line per logged step (every named loss, lr, tokens/s)
    tb/                  the same scalars as TensorBoard event files
    checkpoints/step-N/  weights (*.safetensors), optimizer.pt, scheduler.pt, state.json
    checkpoints/LAST     the name of the newest complete checkpoint

Distributed: launched with `torchrun --nproc_per_node=K`, every rank runs the same loop on its shard
of each global batch; gradients of the parameters that got one (the sampled path) are averaged with
one all-reduce, so idle supernet blocks cost nothing.
"""

from __future__ import annotations

import functools
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from elasticlm.errors import ElasticLMError
from elasticlm.runtime import Dist, autocast, resolve_bf16, resolve_device
from elasticlm.train.run_folder import (MetricsLog, find_checkpoint, load_checkpoint_weights,  # noqa: F401
                                        save_checkpoint, truncate_jsonl)

# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """How a stage is optimised (the paper's settings are the defaults where it states them)."""

    lr: float = 1e-4
    """Peak learning rate of AdamW."""
    batch_size: int = 32
    """Global batch (sequences) per optimizer step, summed over ranks and accumulation steps."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (per rank); the batch is split evenly between them."""
    epochs: float = 1.0
    """Passes over the training data (fractional allowed); ignored when `max_steps` is set."""
    max_steps: int | None = None
    """Optimizer steps to run (overrides `epochs`)."""
    min_steps: int | None = None
    """At least this many optimizer steps when `epochs` gives fewer: a small dataset gets more passes
    instead of a model left at the majority class (ignored when `max_steps` is set)."""
    warmup_ratio: float = 0.1
    """Share of the steps spent warming the learning rate up linearly from 0 (then linear decay to 0)."""
    weight_decay: float = 0.01
    """AdamW weight decay, not applied to biases and LayerNorm weights."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this (None: no clipping)."""
    device: str = "auto"
    """"auto" (this rank's GPU when there is one, else the CPU), "cpu", "cuda", "cuda:1", ..."""
    precision: str = "auto"
    """"bf16" (autocast), "fp32", or "auto": bf16 where this machine multiplies bf16 matrices faster
    than fp32 (AMX and most AVX512-BF16 CPUs, GPUs), else fp32 (measured once per process)."""
    seed: int = 0
    """Seeds data order, masks, sampled paths and new weights (each derived from (seed, step))."""
    group_by_length: bool = False
    """Batches of rows of similar length, where a stage gives lengths (task fine-tuning and retraining):
    each window of 50 batches of the epoch's shuffled order is sorted by length and cut into batches,
    whose order is shuffled again (transformers' `group_by_length`); far less padding is computed."""
    log_every: int = 10
    """Write a metrics line every this many steps."""
    checkpoint_every: int | None = None
    """Save a `step-N/` checkpoint every this many steps (the last step is always saved)."""
    keep_checkpoints: int = 2
    """Checkpoints to keep (older ones are deleted once a newer one is complete)."""
    progress: bool = True
    """Show a progress bar (loss, tokens/s, ETA) on stderr."""

    def validate(self, where: str = "training config") -> None:
        checks = [
            ("lr", self.lr > 0, "must be > 0"),
            ("batch_size", self.batch_size > 0, "must be > 0"),
            ("grad_accum", self.grad_accum > 0, "must be > 0"),
            ("epochs", self.epochs > 0 or self.max_steps is not None, "must be > 0"),
            ("max_steps", self.max_steps is None or self.max_steps > 0, "must be > 0"),
            ("min_steps", self.min_steps is None or self.min_steps > 0, "must be > 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "must be in [0, 1)"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0, "must be > 0"),
            ("log_every", self.log_every > 0, "must be > 0"),
            ("checkpoint_every", self.checkpoint_every is None or self.checkpoint_every > 0, "must be > 0"),
            ("keep_checkpoints", self.keep_checkpoints >= 1, "must be >= 1"),
            ("precision", self.precision in ("auto", "bf16", "fp32"), "must be auto, bf16 or fp32"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise ElasticLMError(f"{where}: {name}={getattr(self, name)!r} {why}")

    def torch_device(self, dist: "Dist | None" = None) -> torch.device:
        """`device` resolved: with "auto", GPU `LOCAL_RANK` when CUDA is available, else the CPU."""
        return resolve_device(self.device)

    @property
    def bf16(self) -> bool:
        """Whether this run computes under bf16 autocast (`precision` resolved on this machine)."""
        return resolve_bf16(self.precision)

    def total_steps(self, n_items: int | list[int]) -> int:
        """Optimizer steps for `n_items` training examples/blocks (a list: several tasks, each its
        own `epochs`): `max_steps` if set, else the epochs' steps, at least `min_steps`."""
        if self.max_steps:
            return int(self.max_steps)
        items = n_items if isinstance(n_items, list) else [n_items]
        return max(1, self.min_steps or 1, sum(math.ceil(self.epochs * n / self.batch_size) for n in items))


def itstime(step: int, every: int | None, total: int | None = None, *, last: bool = False) -> bool:
    """True on every `every`-th step (and on the last step when `last`)."""
    if last and total is not None and step == total:
        return True
    return bool(every) and step > 0 and step % every == 0


def fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --------------------------------------------------------------------------------------------------
# Data order: deterministic per step (batching and padding: `elasticlm.data.batching`)
# --------------------------------------------------------------------------------------------------


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The order of `n` items in epoch `epoch` (a fresh seeded permutation per epoch)."""
    return list(_epoch_order(n, seed, epoch, shuffle))


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> tuple[int, ...]:
    """`epoch_order`, kept for the few epochs in use (every step of an epoch reads the same one)."""
    order = list(range(n))
    if shuffle:
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
    return tuple(order)


@functools.lru_cache(maxsize=4)
def _grouped_order(n: int, seed: int, epoch: int, shuffle: bool, batch: int, lengths: tuple[int, ...],
                   window: int = 50) -> tuple[int, ...]:
    """`epoch_order` with batches of similar length: each window of `window` batches of it is sorted by
    length (longest first) and cut into batches, whose order is then shuffled (seeded by the epoch)."""
    order = _epoch_order(n, seed, epoch, shuffle)
    out: list[int] = []
    for s in range(0, n, window * batch):
        chunk = sorted(order[s:s + window * batch], key=lambda i: -lengths[i])
        batches = [chunk[j:j + batch] for j in range(0, len(chunk), batch)]
        random.Random(f"{seed}:group:{epoch}:{s}").shuffle(batches)
        out.extend(i for b in batches for i in b)
    return tuple(out)


def step_rows(n: int, cfg: TrainConfig, step: int, micro: int, dist: "Dist", *, shuffle: bool = True,
              lengths: tuple[int, ...] | None = None) -> list[int]:
    """Indices (into `n` items) of this rank's micro-batch `micro` of optimizer step `step` (0-based).

    The global batch of step s is items [s·B, (s+1)·B) of the concatenated per-epoch permutations
    (an epoch's tail joins the next epoch's head); it is cut into `grad_accum` micro-batches, and
    each micro-batch into `world` equal shards, rank r taking shard r. With `cfg.group_by_length` and
    the items' `lengths`, each epoch's permutation is grouped by length first (`_grouped_order`).
    """
    per_micro = cfg.batch_size // (cfg.grad_accum * dist.world)
    if per_micro < 1 or cfg.batch_size % (cfg.grad_accum * dist.world):
        raise ElasticLMError(f"batch_size {cfg.batch_size} must be a multiple of grad_accum × processes "
                             f"({cfg.grad_accum} × {dist.world})")
    start = step * cfg.batch_size + micro * per_micro * dist.world + dist.rank * per_micro
    out, orders = [], {}
    for pos in range(start, start + per_micro):
        epoch, i = divmod(pos, n)
        if epoch not in orders:
            orders[epoch] = (_grouped_order(n, cfg.seed, epoch, shuffle, cfg.batch_size, lengths)
                             if cfg.group_by_length and lengths is not None else _epoch_order(n, cfg.seed, epoch, shuffle))
        out.append(orders[epoch][i])
    return out


# --------------------------------------------------------------------------------------------------
# Optimizer and schedule
# --------------------------------------------------------------------------------------------------


def make_optimizer(named_params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (β = 0.9, 0.999; fused where supported) with no decay on biases and norms."""
    decay, no_decay = [], []
    for name, p in named_params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
    except (RuntimeError, TypeError):  # fused unsupported for this device/dtype
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def make_scheduler(optimizer, total: int, warmup_ratio: float):
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay to 0 (transformers')."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


@dataclass
class Periodic:
    """Inline periodic work of a stage: `fn(state) -> dict | None`, run every `every` steps."""

    every: int | None
    fn: Callable[[dict[str, Any]], dict[str, Any] | None]
    at_end: bool = False
    """Also run after the last step."""


def fit(objective, cfg: TrainConfig, out: Path, *, total: int, dist: Dist | None = None,
        periodic: dict[str, Periodic] | None = None, extra_state: Callable[[], dict] | None = None,
        restore_state: Callable[[dict], None] | None = None, say: Callable[[str], None] | None = None,
        tokens_of: Callable[[dict], int] | None = None, resume: bool = True) -> dict[str, Any]:
    """Train `objective` for `total` optimizer steps, resuming from the newest good checkpoint in
    `out` when `resume`. Returns the `state` dict (step, optimizer, scheduler, last losses, ...).

    `periodic` work (growth, evaluation) runs inline after the optimizer step, in the order given;
    what it returns is logged. `extra_state()` adds to each checkpoint's state.json and
    `restore_state(saved)` gets it back on resume.
    """
    cfg.validate()
    dist = dist or Dist()
    out = Path(out)
    say = say or (lambda s: print(s, file=sys.stderr, flush=True))
    talk = say if dist.main else (lambda s: None)
    periodic = periodic or {}
    modules = objective.modules

    ckpt, state = _resume(objective, cfg, out, total, dist, talk, restore_state, resume)
    step, optimizer, scheduler = state["step"], state["optimizer"], state["scheduler"]
    log = MetricsLog(out, resume_step=step, enabled=dist.main)
    state["tokens_of"] = tokens_of or (lambda b: int(b["attention_mask"].sum()) if "attention_mask" in b else 0)

    bar, lines = None, cfg.progress and dist.main and not sys.stderr.isatty()  # a bar on a terminal, else lines
    if cfg.progress and dist.main and step < total and not lines:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=out.name, unit="step", dynamic_ncols=True, file=sys.stderr)
    for module in modules.values():
        module.train()
    t0, tokens0, running, n_running = time.time(), state["tokens"], {}, 0
    last_good = ckpt
    try:
        while step < total:
            step_losses = _step(objective, cfg, state, out, last_good)
            step += 1
            state["step"] = step
            for k, v in step_losses.items():
                running[k] = running.get(k, 0.0) + v
            n_running += 1
            record: dict[str, Any] = {}
            for name, work in periodic.items():
                if itstime(step, work.every, total, last=work.at_end):
                    got = work.fn(state)
                    if got:
                        record.update(got)
            elapsed = time.time() - t0
            tok_s = (state["tokens"] - tokens0) / max(elapsed, 1e-9)
            if itstime(step, cfg.log_every, total, last=True) or record:
                avg = {k: v / n_running for k, v in running.items()}
                log.write({"step": step, **{k: round(v, 6) for k, v in avg.items()},
                           "lr": scheduler.get_last_lr()[0], "tokens": state["tokens"],
                           "tokens_per_s": round(tok_s, 1), "elapsed_s": round(elapsed, 2),
                           **{k: v for k, v in record.items() if isinstance(v, (int, float, str))}})
                state["losses"] = avg
                running, n_running = {}, 0
                if bar is not None:
                    bar.set_postfix(loss=f"{avg.get('loss', float('nan')):.4f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                elif lines:
                    eta = elapsed / max(step - state.get("start_step", 0), 1) * (total - step)
                    say(f"step {step}/{total}  loss {avg.get('loss', float('nan')):.4f}  "
                        f"lr {scheduler.get_last_lr()[0]:.2e}  {tok_s:,.0f} tok/s  eta {fmt_time(eta)}")
            if bar is not None:
                bar.update(1)
            if itstime(step, cfg.checkpoint_every, total, last=True):
                if dist.main:
                    extra = {**(objective.state() if hasattr(objective, "state") else {}),
                             **(extra_state() if extra_state else {})}
                    last_good = save_checkpoint(out, step, modules, optimizer, scheduler,
                                                {"tokens": state["tokens"], **extra}, cfg.keep_checkpoints)
                dist.barrier()
    finally:
        if bar is not None:
            bar.close()
        log.close()
    state["seconds"] = time.time() - t0
    return state


def _resume(objective, cfg: TrainConfig, out: Path, total: int, dist: Dist, talk: Callable[[str], None],
            restore_state: Callable[[dict], None] | None, resume: bool):
    """(the checkpoint resumed from or None, the loop's `state`): weights first (the supernet widens
    grown FFNs itself), then the optimizer and scheduler built over them and their state loaded."""
    modules = objective.modules
    step, saved = 0, {}
    ckpt = find_checkpoint(out, list(modules), talk) if resume else None
    if ckpt is not None:
        saved = load_checkpoint_weights(ckpt, modules)
        step = int(saved["step"])
        if hasattr(objective, "restore"):
            objective.restore(saved)
        if restore_state:
            restore_state(saved)
        talk(f"resuming from {ckpt} (step {step}/{total})")
    device = cfg.torch_device(dist)
    for module in modules.values():
        module.to(device)
    named = [(f"{m}.{n}", p) for m, module in modules.items() for n, p in module.named_parameters()]
    optimizer = make_optimizer(named, cfg.lr, cfg.weight_decay)
    scheduler = make_scheduler(optimizer, total, cfg.warmup_ratio)
    if ckpt is not None:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True, map_location=device))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    state: dict[str, Any] = {"step": step, "start_step": step, "optimizer": optimizer, "scheduler": scheduler,
                             "dist": dist, "tokens": int(saved.get("tokens", 0)), "total": total, "device": device}
    return ckpt, state


def _step(objective, cfg: TrainConfig, state: dict[str, Any], out: Path, last_good) -> dict[str, float]:
    """One optimizer step: the micro-batches' losses backpropagated, gradients all-reduced and clipped,
    AdamW and the schedule stepped. Returns the step's losses (averaged over micro-batches)."""
    step, device, dist, optimizer = state["step"], state["device"], state["dist"], state["optimizer"]
    modules = objective.modules
    step_losses: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                 for k, v in objective.batch(step, micro).items()}
        with autocast(cfg.bf16, device.type):
            losses = objective.losses(batch, step)
        loss = losses["loss"]
        if not torch.isfinite(loss.detach()).item():
            kept = f"the last good checkpoint {last_good} is kept" if last_good else "no checkpoint was written"
            raise ElasticLMError(f"loss is {loss.item()} at step {step + 1} ({out}); {kept}; "
                                 f"lower the learning rate (now {cfg.lr:g}) or use fp32")
        (loss / cfg.grad_accum).backward()
        for k, v in losses.items():
            step_losses[k] = step_losses.get(k, 0.0) + float(v.detach()) / cfg.grad_accum
        state["tokens"] += state["tokens_of"](batch) * dist.world
    params = [p for module in modules.values() for p in module.parameters()]  # growth replaces some
    dist.all_reduce_grads(params)
    if cfg.max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], cfg.max_grad_norm)
    optimizer.step()
    state["scheduler"].step()
    optimizer.zero_grad(set_to_none=True)
    return step_losses
