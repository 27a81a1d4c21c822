"""How closely the found model follows its task teacher, from the saved predictions (numpy, no torch).

A student distilled from a teacher can only be as good as its imitation: where the two disagree, and
how that depends on the teacher's confidence, says whether the gap to the teacher is on the sentences
the teacher itself finds hard (little to gain) or on ones it is sure of (the student's capacity or
data). Classification tasks only: the teacher's and the found model's logits on the test split (dev
where there is no labelled test), the found model's class probabilities averaged over its seeds.
"""

from __future__ import annotations

import numpy as np

from elasticlm.report.tables import md_table

# teacher confidence (its top class probability) bands, upper bound exclusive except the last
BANDS: tuple[float, ...] = (0.7, 0.9)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of n×C logits (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def agreement(found: list[dict], teacher: dict) -> dict | None:
    """The found model (one `predictions.npz` dict per seed) against the teacher's: overall agreement,
    the shares where only one of them is right, and per band of teacher confidence the count, both
    accuracies and the agreement. None when the files are not classification logits of one split."""
    if not found:
        return None
    split = "test" if "test" in teacher and all("test" in f for f in found) else "dev"
    if split not in teacher or f"{split}_labels" not in teacher:
        return None
    labels = np.asarray(teacher[f"{split}_labels"])
    t_logits = np.asarray(teacher[split])
    outs = [np.asarray(f.get(split)) for f in found]
    if t_logits.ndim != 2 or any(o.ndim != 2 or o.shape != t_logits.shape for o in outs):
        return None
    if any(not np.array_equal(np.asarray(f.get(f"{split}_labels")), labels) for f in found):
        return None
    t_prob = softmax(t_logits)
    t_pred, conf = t_prob.argmax(-1), t_prob.max(-1)
    s_pred = np.mean([softmax(o) for o in outs], axis=0).argmax(-1)
    t_ok, s_ok = t_pred == labels, s_pred == labels
    edges = (0.0, *BANDS, np.inf)
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf >= lo) & (conf < hi)
        if m.any():
            bands.append({"from": float(lo), "to": None if hi == np.inf else float(hi), "n": int(m.sum()),
                          "teacher": float(t_ok[m].mean()), "found": float(s_ok[m].mean()),
                          "agree": float((s_pred == t_pred)[m].mean())})
    return {"split": split, "n": int(len(labels)), "seeds": len(outs), "agree": float((s_pred == t_pred).mean()),
            "teacher_only": float((t_ok & ~s_ok).mean()), "found_only": float((s_ok & ~t_ok).mean()),
            "bands": bands}


def agreement_lines(found: list[dict], teacher: dict) -> list[str]:
    """The report's subsection: a sentence and the table by teacher confidence ([] when not applicable)."""
    a = agreement(found, teacher)
    if a is None:
        return []
    seeds = f"its {a['seeds']} seeds' probabilities averaged" if a["seeds"] > 1 else "one seed"
    rows = [[(f"< {b['to']:.1f}" if b["from"] == 0 else f"{b['from']:.1f}–{b['to']:.1f}") if b["to"] is not None
             else f"≥ {b['from']:.1f}", str(b["n"]),
             f"{100 * b['teacher']:.1f}", f"{100 * b['found']:.1f}", f"{100 * b['agree']:.1f}"] for b in a["bands"]]
    return [f"On the {a['n']:,} {a['split']} examples the found model ({seeds}) predicts the teacher's class on "
            f"{100 * a['agree']:.1f}%; the teacher alone is right on {100 * a['teacher_only']:.1f}%, the found model "
            f"alone on {100 * a['found_only']:.1f}%. By the teacher's confidence (its top class probability):", "",
            *md_table(["teacher confidence", "examples", "teacher acc.", "found acc.", "agreement %"], rows,
                      ["l", "r", "r", "r", "r"]), ""]
