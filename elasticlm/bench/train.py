"""Supernet-training speed, measured in one run (`elasticlm bench --only train`).

1. Supernet KD step (path sampling + teacher forward + losses + backward + optimizer step) vs the
   same step of a plain standalone student of that architecture (the extracted model).
   Target: ratio ≤ 1.15.
2. Model FLOPs utilisation of the supernet KD step: FLOPs of one step (counted by
   torch.utils.flop_counter) per second over the bf16 matmul peak measured in this run.
   Target ≥ 0.30 at ELM-Small dimensions with the MiniLM teacher, bf16. Also tokens/h for bf16 and
   fp32, and peak memory (max RSS).
3. Dynamic-width supernet (FFNs from d/4, PCA-guided growth rounds spread over the run, as ten epochs
   would) vs fixed-width supernet (all FFNs d): wall time of the same number of steps.
   Target: ratio < 0.9 (the paper reports 0.84).
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from elasticlm.bench.core import alternate, sync
from elasticlm.data.corpus import MLMCollator, probe_batches
from elasticlm.distill.losses import DistillConfig, HiddenProjection, supernet_projection, weighted_total
from elasticlm.distill.teachers import load_teacher
from elasticlm.kinds import KINDS
from elasticlm.models import Capture
from elasticlm.runtime import Dist, autocast
from elasticlm.space import get_preset
from elasticlm.train.engine import Periodic, TrainConfig, fit, make_optimizer
from elasticlm.train.objectives import MLMDistill, representation_losses
from elasticlm.train.supernet import GrowthConfig, PretrainConfig, build_supernet, sample_path
from elasticlm.train.supernet_stages import Growth


def synthetic_blocks(tokenizer, n: int, seq: int, seed: int = 0) -> list[dict]:
    """Random corpus-like blocks ([CLS] ... [SEP], no padding) in the teacher's vocabulary."""
    g = torch.Generator().manual_seed(seed)
    special = set(tokenizer.all_special_ids)
    low = 1000 if len(tokenizer) > 2000 else max(special) + 1  # past the specials (and BERT's [unused])
    ids = torch.randint(low, len(tokenizer), (n, seq), generator=g)
    ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    return [{"input_ids": r, "attention_mask": torch.ones(seq, dtype=torch.long),
             "token_type_ids": torch.zeros(seq, dtype=torch.long),
             "special_tokens_mask": torch.tensor([int(t) in special for t in r.tolist()], dtype=torch.long)}
            for r in ids]


def matmul_peak(bf16: bool, device: torch.device, n: int = 2048) -> float:
    """Measured FLOP/s of a square matmul (bf16 or fp32) on this machine."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    t = alternate({"mm": lambda: torch.mm(a, b)}, 5, device)["mm"]
    return 2 * n ** 3 / t


class Standalone:
    """The reference: the same KD step on a plain extracted student (no supernet, no sampling)."""

    def __init__(self, model, proj, teacher, cfg: DistillConfig):
        self.model, self.proj, self.teacher, self.cfg = model, proj, teacher, cfg
        self.lmap = [teacher.layer_for_student(l + 1, model.config.num_hidden_layers)
                     for l in range(model.config.num_hidden_layers)]

    def losses(self, batch, step):
        ids, mask, types, labels = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], batch["labels"]
        out = self.model.elasticlm.encode(ids, mask, types, capture=Capture(attn_probs=True, block_output=True))
        t_out = self.teacher(ids, mask, types)
        picked = labels != -100
        logits = self.model.lm_head(out.last_hidden_state[picked])
        losses = {"task": F.cross_entropy(logits.float(), labels[picked])}
        losses.update(representation_losses(out, t_out, mask, self.proj, self.lmap, self.cfg))
        return {"loss": weighted_total(losses, self.cfg), **losses}


def kd_steps(preset: str, batch: int, seq: int, repeats: int, teacher, bf16: bool, device: torch.device):
    """(supernet step s, standalone step s, FLOPs per supernet step, arch)."""
    space = get_preset(preset).space
    cfg = PretrainConfig(preset=preset, train=TrainConfig(batch_size=batch, precision="bf16" if bf16 else "fp32", seed=0))
    net = build_supernet(space, fixed=False, seed=0)
    rng = random.Random(0)
    for (l, kind, sharing), _ in net.blocks():  # realistic grown widths
        net.grow_ffn(l, kind, sharing, rng.choice(space.ffn_grid))
    net.to(device)
    proj = supernet_projection(space, teacher.hidden_size, cfg.distill.projection).to(device)
    blocks = synthetic_blocks(teacher.tokenizer, 4 * batch, seq)
    collate = lambda g: MLMCollator(teacher.tokenizer, generator=g)  # noqa: E731
    sup = MLMDistill(net, proj, teacher, blocks, collate, cfg, Dist())
    sup_opt = make_optimizer(list(net.named_parameters()) + list(proj.named_parameters()), 1e-4, 0.01)
    data = {k: v.to(device) for k, v in sup.batch(0, 0).items()}
    arch = sample_path(space, net.widths(), 0, 0, cfg.paths)
    model = net.extract(arch, head="mlm", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to(device).train()
    ref = Standalone(model, HiddenProjection(space.num_layers, space.hidden_size, teacher.hidden_size).to(device),
                     teacher, cfg.distill)
    ref_opt = make_optimizer(list(model.named_parameters()) + list(ref.proj.named_parameters()), 1e-4, 0.01)

    def step(obj, opt, params):
        def run():
            with autocast(bf16, device.type):
                loss = obj.losses(data, 0)["loss"]  # step 0 always: the same path as the reference
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    sup_step = step(sup, sup_opt, list(net.parameters()) + list(proj.parameters()))
    ref_step = step(ref, ref_opt, list(model.parameters()) + list(ref.proj.parameters()))
    with FlopCounterMode(display=False) as counter:
        sup_step()
    flops = counter.get_total_flops()
    t = alternate({"supernet": sup_step, "standalone": ref_step}, repeats, device)  # interleaved, 2 warm-ups
    return t["supernet"], t["standalone"], flops, arch


def path_ffn_work(space, widths: dict, rounds: list[dict], steps: int) -> list[float]:
    """FFN multiply-adds of the average sampled path relative to all FFNs at d, at each step of a run
    that starts at `widths` and applies `rounds` (growth.jsonl lines: step, blocks' widths after).
    A path takes each of a layer's candidates equally often, so this is the blocks' sum of
    input width × FFN width × FFNs per block over the same sum at f = d. A mobile block's FFNs work
    at its inner width i = d/4 (two of them), a bert block's at d: a unit of width costs about twice
    as much in a bert block, and growth mostly picks bert blocks."""
    def cost(key, f):
        kind = key[1]
        return space.attention_width(kind) * f * len(space.ffn_names(kind))

    fixed = sum(cost(k, space.hidden_size) for k in widths)
    current, out, pending = dict(widths), [], sorted(rounds, key=lambda r: r["step"])
    for step in range(1, steps + 1):
        while pending and pending[0]["step"] < step:  # a round at step s runs after step s
            for b in pending.pop(0).get("blocks", []):  # a "stopped" record grows nothing
                current[tuple(b["block"])] = b["after"]
        out.append(sum(cost(k, f) for k, f in current.items()) / fixed)
    return out


def dynamic_vs_fixed(preset: str, batch: int, seq: int, steps: int, teacher, bf16: bool, out: Path,
                     device: torch.device):
    """Wall seconds of `steps` pretraining steps: dynamic (FFNs from d/4, a growth round every
    steps/10) vs fixed widths (all d). The growth rounds themselves are timed apart (seconds per
    round): in a real run about a dozen of them spread over the first 80% of the steps, thousands of
    steps apart, while here ten of them fall into a few dozen steps."""
    space = get_preset(preset).space
    blocks = synthetic_blocks(teacher.tokenizer, steps * batch, seq)
    # the PCA probe: enough tokens for the widest FFN (2·f ≤ 4d tokens), at least 32 blocks
    held = synthetic_blocks(teacher.tokenizer, max(32, -(-4 * space.hidden_size // seq)), seq, seed=1)
    probe = probe_batches(held, len(held))
    collate = lambda g: MLMCollator(teacher.tokenizer, generator=g)  # noqa: E731
    seconds: dict[str, list[float]] = {}
    mean_width, work = float("nan"), []
    for mode in ("fixed", "dynamic", "fixed2", "dynamic2"):  # twice each, interleaved
        kind = mode.rstrip("2")
        cfg = PretrainConfig(preset=preset, train=TrainConfig(batch_size=batch, precision="bf16" if bf16 else "fp32",
                                                              max_steps=steps, progress=False, log_every=steps),
                             growth=GrowthConfig(mode=kind, every=max(1, steps // 10)))
        net = build_supernet(space, fixed=kind == "fixed", seed=0)
        start_widths = dict(net.widths())
        proj = supernet_projection(space, teacher.hidden_size, cfg.distill.projection)
        obj = MLMDistill(net, proj, teacher, blocks, collate, cfg, Dist())
        run = out / mode
        periodic = {}
        if kind == "dynamic":
            run.mkdir(parents=True, exist_ok=True)
            periodic["growth"] = Periodic(cfg.growth.every, Growth(net, probe, cfg, run, Dist()))
        sync(device)
        t = time.perf_counter()
        fit(obj, cfg.train, run, total=steps, periodic=periodic, say=lambda s: None, resume=False)
        sync(device)
        took = time.perf_counter() - t
        if kind == "dynamic":
            rounds = [json.loads(line) for line in (run / "growth.jsonl").read_text().splitlines()]
            growth = sum(r.get("seconds", 0.0) for r in rounds)
            seconds.setdefault("growth", []).append(growth / max(1, len(rounds)))
            took -= growth  # growth rounds are timed apart: a real run has one per epoch
            mean_width = net.mean_ffn_width()
            work = path_ffn_work(space, start_widths, rounds, steps)
        seconds.setdefault(kind, []).append(took)
    return min(seconds["dynamic"]), min(seconds["fixed"]), mean_width, min(seconds["growth"]), work


def train_speed(*, quick: bool = False, preset: str | None = None, batch: int | None = None, seq: int | None = None,
                repeats: int | None = None, steps: int | None = None, teacher: str = "all-minilm-l6-v2",
                dynamic: bool = True, device: str | None = None, say=print) -> list[dict]:
    """The three supernet-training ratios (KD step, MFU, dynamic/fixed) measured in one run.
    Defaults: ELM-Small dims, B=32, N=128, 5 repeats, 40 steps; quick: demo dims, B=4, N=32, 2, 10."""
    d = ("demo", 4, 32, 2, 10) if quick else ("small", 32, 128, 5, 40)
    preset, batch, seq, repeats, steps = (v if v is not None else dv
                                          for v, dv in zip((preset, batch, seq, repeats, steps), d))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    say(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {preset}, B={batch} N={seq}, "
        f"teacher {teacher}")
    tm = load_teacher(teacher, task_kinds=KINDS.values(), device=dev)
    say(f"device {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'}")
    size = 512 if quick else (8192 if dev.type == "cuda" else 2048)
    peak = {bf16: matmul_peak(bf16, dev, size) for bf16 in (True, False)}
    tokens = batch * seq
    rows = {}
    for bf16 in (True, False):
        sup, ref, flops, arch = kd_steps(preset, batch, seq, repeats, tm, bf16, dev)
        rows[bf16] = (sup, ref, flops)
        name = "bf16" if bf16 else "fp32"
        say(f"KD step {name}: supernet {sup * 1e3:8.1f} ms  standalone {ref * 1e3:8.1f} ms  ratio {sup / ref:.3f} "
            f"(target <= 1.15)  MFU {flops / sup / peak[bf16]:.3f} of the {name} matmul peak "
            f"{peak[bf16] / 1e12:.2f} TFLOP/s  {tokens / sup * 3600 / 1e6:.2f}M tokens/h  arch {arch.short()}")
    sup, ref, flops = rows[True]
    mfu = flops / sup / peak[True]
    common = {"preset": preset, "batch": batch, "seq": seq, "device": dev.type}
    results = [
        {"name": "KD step supernet / standalone (bf16)", "ratio": sup / ref, "target": 1.15, "cmp": "<=",
         "ok": sup / ref <= 1.15, "supernet_ms": round(sup * 1e3, 2), "standalone_ms": round(ref * 1e3, 2),
         "fp32_ratio": rows[False][0] / rows[False][1], **common},
        {"name": "MFU of the supernet KD step (bf16)", "ratio": mfu, "target": 0.30, "cmp": ">=", "ok": mfu >= 0.30,
         "peak_tflops": round(peak[True] / 1e12, 3), "step_gflops": round(flops / 1e9, 3),
         "tokens_per_h_bf16": round(tokens / rows[True][0] * 3600), "tokens_per_h_fp32": round(tokens / rows[False][0] * 3600),
         **common},
    ]
    if dynamic:
        bf16 = TrainConfig().bf16
        with tempfile.TemporaryDirectory() as tmp:
            dyn, fixed, width, per_round, work = dynamic_vs_fixed(preset, batch, seq, steps, tm, bf16, Path(tmp), dev)
        say(f"dynamic vs fixed widths, {steps} steps {'bf16' if bf16 else 'fp32'}: dynamic {dyn:.1f} s "
            f"(mean FFN width at the end {width:.0f}) fixed {fixed:.1f} s  ratio {dyn / fixed:.3f} (target < 0.9); "
            f"each of the 10 growth rounds (PCA over all blocks) took {per_round:.2f} s more; the average path's "
            f"FFN work was {statistics.mean(work):.2f} of fixed over the run ({work[0]:.2f} first, {work[-1]:.2f} last)")
        results.append({"name": "dynamic / fixed widths, wall time", "ratio": dyn / fixed, "target": 0.9, "cmp": "<",
                        "ok": dyn / fixed < 0.9, "dynamic_s": round(dyn, 3), "fixed_s": round(fixed, 3),
                        "mean_ffn_width": round(width, 1), "path_ffn_work": round(statistics.mean(work), 4),
                        "growth_round_s": round(per_round, 3), "steps": steps,
                        **common})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = f", GPU peak allocated {torch.cuda.max_memory_allocated() / 2**20:,.0f} MB" if dev.type == "cuda" else ""
    say(f"peak memory (max RSS) {peak_mb:,.0f} MB{gpu}")
    for r in results:
        r["peak_rss_mb"] = round(peak_mb)
    return results
