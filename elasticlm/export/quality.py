"""What int8 quantisation costs and buys: accuracy change and speed-up against the fp32 ONNX model.

When the source tells its task (a run folder's `run_config.json` "task", or a retrained model
folder's own run config), both ONNX models score the task's dev split (up to `MAX_EVAL_ROWS` rows)
with the task's metrics; otherwise they are compared on `onnx.SAMPLE_TEXTS` by how often their
arg-max predictions agree. The speed-up is measured on the same inputs: one pass over batches of
32 and over single examples, each the median of 3 passes after a warm-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from elasticlm.errors import ElasticLMError

MAX_EVAL_ROWS = 2000
"""Dev rows scored at most (the first ones)."""
BATCH = 32
"""Rows per batch for scoring and for the batched timing."""
TIMED_BATCHES = 8
"""Batches per timed pass (the first ones)."""


def task_of(source) -> dict | None:
    """{"task", "data_dir", "max_length"} from the source's run config, or None when it names none."""
    candidates = []
    if source.run_dir is not None:
        candidates.append((source.run_dir / "run_config.json", lambda c: c))
    candidates.append((source.model_dir / "run_config.json", lambda c: (c.get("config") or {}).get("retrain") or {}))
    for path, pick in candidates:
        try:
            cfg = pick(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(cfg, dict) and cfg.get("task"):
            retrain = cfg.get("retrain") if isinstance(cfg.get("retrain"), dict) else cfg
            return {"task": str(cfg["task"]), "data_dir": cfg.get("data_dir"),
                    "max_length": retrain.get("max_length")}
    return None


def _dev_batches(task: dict, tokenizer, max_length: int, say: Callable[[str], None]):
    """(TaskSpec, batches, labels, description) of the task's dev split, or None when unusable."""
    from elasticlm.data.tasks import load_task
    from elasticlm.kinds import kind_of

    try:
        data = load_task(task["task"], data_dir=task["data_dir"])
    except ElasticLMError as err:
        say(f"int8: cannot load task {task['task']} ({err}); comparing on sample text instead")
        return None
    spec = data.spec
    dev = data.splits.get("dev")
    if not kind_of(spec).classes or dev is None or not len(dev):
        return None
    dev = dev.select(range(min(MAX_EVAL_ROWS, len(dev))))
    labels = np.asarray(dev["label"])
    if (labels < 0).any():
        return None
    columns = [dev[f] for f in spec.text_fields]
    batches = []
    for i in range(0, len(dev), BATCH):
        parts = [col[i: i + BATCH] for col in columns]
        enc = tokenizer(*parts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        batches.append({k: np.asarray(enc[k], dtype=np.int64) for k in keys})
    return spec, batches, labels, f"{spec.name} dev ({len(dev):,} examples, max {max_length} tokens)"


def _outputs(sess, batches) -> list[list[np.ndarray]]:
    from elasticlm.export.onnx import run_session

    return [run_session(sess, b) for b in batches]


def _compare(a: list[list[np.ndarray]], b: list[list[np.ndarray]], batches, head) -> dict[str, float]:
    """Agreement of arg-max predictions (real tokens for token-level outputs) and max |difference|;
    for hidden states (no arg-max) the mean cosine similarity instead."""
    from elasticlm.export.onnx import real_positions

    same = total = 0
    cos: list[np.ndarray] = []
    diff = 0.0
    for outs_a, outs_b, batch in zip(a, b, batches):
        for x, y in zip(outs_a, outs_b):
            x, y = real_positions(x, batch["attention_mask"]), real_positions(y, batch["attention_mask"])
            diff = max(diff, float(np.abs(x - y).max()))
            if head.auto_class == "AutoModel":
                cos.append((x * y).sum(-1) / np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), 1e-12))
            elif x.ndim >= 1 and x.shape[-1] > 1:
                same += int((x.argmax(-1) == y.argmax(-1)).sum())
                total += int(np.prod(x.shape[:-1]))
    out = {"max_abs_diff": diff}
    if cos:
        out["mean_cosine"] = float(np.concatenate([c.ravel() for c in cos]).mean())
    if total:
        out["argmax_agreement"] = same / total
    return out


def int8_report(folder: Path, model, tokenizer, head, source, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Quantise `folder/model.onnx` to `folder/model.int8.onnx` and measure both (see the module docstring)."""
    from elasticlm.kinds import compute_metrics
    from elasticlm.export.onnx import SAMPLE_TEXTS, quantize_int8, sample_batch, session, time_session

    fp32_path, int8_path = folder / "model.onnx", folder / "model.int8.onnx"
    quantize_int8(fp32_path, int8_path)
    fp32, int8 = session(fp32_path), session(int8_path)
    report: dict[str, Any] = {"file": int8_path.name, "size_mb": round(int8_path.stat().st_size / 1e6, 2),
                              "fp32_size_mb": round(fp32_path.stat().st_size / 1e6, 2)}
    task = task_of(source)
    limit = int(model.config.max_position_embeddings)
    max_length = min(int((task or {}).get("max_length") or 128), limit)
    dev = _dev_batches(task, tokenizer, max_length, say) if task and head.auto_class.endswith("Classification") else None
    if dev is not None:
        spec, batches, labels, on = dev
        out32, out8 = _outputs(fp32, batches), _outputs(int8, batches)
        logits32 = np.concatenate([o[0] for o in out32])
        logits8 = np.concatenate([o[0] for o in out8])
        m32, m8 = compute_metrics(spec, logits32, labels), compute_metrics(spec, logits8, labels)
        report.update(on=on, fp32=m32, int8=m8, change={k: m8[k] - m32[k] for k in m32})
        main = spec.main_metric
        say(f"int8: {spec.name} dev {main} {m32[main]:.4f} (fp32 ONNX) -> {m8[main]:.4f} (int8), "
            f"change {m8[main] - m32[main]:+.4f}")
    else:
        batches = [sample_batch(tokenizer, SAMPLE_TEXTS[i: i + 8], max_length=min(64, limit))
                   for i in range(0, len(SAMPLE_TEXTS), 8)]
        out32, out8 = _outputs(fp32, batches), _outputs(int8, batches)
        report["on"] = f"{len(SAMPLE_TEXTS)} sample sentences (no task to score)"
    report.update(_compare(out32, out8, batches, head))
    if "argmax_agreement" in report and dev is None:
        say(f"int8: arg-max predictions agree with fp32 on {report['argmax_agreement']:.1%} of {report['on']}")
    report["speed"] = _speed(fp32, int8, batches, time_session)
    s = report["speed"]
    say(f"int8: {report['size_mb']} MB (fp32 {report['fp32_size_mb']} MB); speed-up x{s['batched']['speedup']:.2f} "
        f"batched, x{s['single']['speedup']:.2f} one at a time")
    return report


def _speed(fp32, int8, batches, time_session) -> dict[str, Any]:
    """fp32 vs int8 ONNX milliseconds on the same inputs, batched and one example at a time."""
    batched = batches[:TIMED_BATCHES]
    single = [{k: v[i: i + 1, : int(b["attention_mask"][i].sum())] for k, v in b.items()}
              for b in batched[:2] for i in range(len(b["input_ids"]))][:BATCH]
    out = {}
    for name, inputs in (("batched", batched), ("single", single)):
        t32, t8 = time_session(fp32, inputs), time_session(int8, inputs)
        out[name] = {"examples": int(sum(len(b["input_ids"]) for b in inputs)), "fp32_ms": round(t32, 4),
                     "int8_ms": round(t8, 4), "speedup": round(t32 / max(t8, 1e-9), 3)}
    return out
