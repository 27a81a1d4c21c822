"""SQuAD v1.1 / v2.0: the official JSON, windowed features, answer post-processing, EM/F1.

JSON: {"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible" (v2.0)}]}]}]}. The official file names are
train-v1.1.json / dev-v1.1.json and train-v2.0.json / dev-v2.0.json; `load_task("squad-v1.1",
data_dir=...)` takes a folder holding them (or any *train*.json / *dev*.json) or one .json file
(which becomes the split its name says, else "dev").

Features (`prepare_features`): question first, context second, only the context truncated; a context
longer than the window is cut into overlapping windows `stride` tokens apart (the HF tokenizer's
`stride` = tokens of overlap). Each feature keeps its `example_id` and the character offsets of its
context tokens (None for question/special tokens). Training targets are the token positions of the
(first) answer, or the [CLS] index 0 when the answer is not inside the window or the question has no
answer (v2.0).

Metrics (`squad_metrics`) reproduce the official evaluation scripts: answers are normalised
(lower-case, punctuation and the articles a/an/the removed, whitespace collapsed); exact match and
token F1 take the max over the gold answers; scores are percentages. v2.0 treats a question with no
gold answer as having the gold answer "" (so predicting "" scores 1) and adds HasAns_/NoAns_
breakdowns.
"""

from __future__ import annotations

import collections
import json
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from elasticlm.data.spec import TaskData, TaskSpec
from elasticlm.data.textfile import read_text
from elasticlm.errors import ElasticLMError

Example = dict[str, Any]  # id, title, context, question, answers{text, answer_start}, is_impossible


def load_squad(path: str | Path) -> list[Example]:
    """Examples of one SQuAD JSON file, in file order."""
    path = Path(path)
    try:
        doc = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ElasticLMError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ElasticLMError(f"{path}: missing field 'data' (the SQuAD JSON format has a top-level 'data' list)")
    examples = []
    for a, article in enumerate(doc["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            where = f"data[{a}].paragraphs[{p}]"
            if "context" not in para:
                raise ElasticLMError(f"{path}: missing field '{where}.context'")
            for q, qa in enumerate(para.get("qas", [])):
                for field in ("id", "question"):
                    if field not in qa:
                        raise ElasticLMError(f"{path}: missing field '{where}.qas[{q}].{field}'")
                answers = qa.get("answers", [])
                examples.append({
                    "id": str(qa["id"]),
                    "title": article.get("title", ""),
                    "context": para["context"],
                    "question": qa["question"],
                    "answers": {"text": [ans["text"] for ans in answers],
                                "answer_start": [int(ans["answer_start"]) for ans in answers]},
                    "is_impossible": bool(qa.get("is_impossible", False)) or not answers,
                })
    if not examples:
        raise ElasticLMError(f"{path}: no questions found under 'data'")
    return examples


def load_squad_task(spec: TaskSpec, data_dir: str | None) -> TaskData:
    """`load_task("squad-v1.1" | "squad-v2.0", data_dir=folder or .json file)`."""
    import datasets

    version = spec.name.removeprefix("squad-v")
    if data_dir is None:
        raise ElasticLMError(
            f"task {spec.name}: SQuAD is not available offline; pass --data-dir with "
            f"train-v{version}.json / dev-v{version}.json (the official SQuAD JSON)"
        )
    root = Path(data_dir).expanduser()
    if root.is_file():
        files = {"train" if "train" in root.name.lower() else "dev": root}
    elif root.is_dir():
        files = {}
        for split in ("train", "dev"):
            official = root / f"{split}-v{version}.json"
            found = [official] if official.is_file() else sorted(root.glob(f"*{split}*.json"))
            if found:
                files[split] = found[0]
        if not files:
            raise ElasticLMError(f"{root}: no SQuAD JSON found (expected train-v{version}.json, dev-v{version}.json)")
    else:
        raise ElasticLMError(f"{root}: SQuAD data folder or file not found")
    splits = {split: datasets.Dataset.from_list(load_squad(path)) for split, path in files.items()}
    return TaskData(spec, splits, source=str(root))


def prepare_features(examples: Iterable[Example], tokenizer, max_length: int = 384, stride: int = 128):
    """Windowed features of `examples` (a list of examples or a `datasets.Dataset` of them).

    Returns a `datasets.Dataset`, one row per window: input_ids, attention_mask, token_type_ids
    (each `max_length` long, padded), start_positions, end_positions (token indices; 0 = [CLS] for
    no answer in this window), example_id, offset_mapping (per token [start, end] character span in
    the context, None for non-context tokens).
    """
    import datasets

    examples = list(examples)
    questions = [ex["question"].lstrip() for ex in examples]
    contexts = [ex["context"] for ex in examples]
    if not examples:
        raise ElasticLMError("prepare_features: no examples to window")
    try:
        enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")
    except Exception as err:  # noqa: BLE001 - the tokenizers' own messages are multi-line and obscure
        longest = max(len(tokenizer(q)["input_ids"]) for q in questions)
        raise ElasticLMError(f"cannot window SQuAD contexts into {max_length} tokens with {stride} tokens of overlap "
                             f"(longest question {longest} tokens): raise max_length or lower the stride "
                             f"({str(err).splitlines()[0][:80]})") from None
    sample_map = enc.pop("overflow_to_sample_mapping")
    out: dict[str, list] = {"start_positions": [], "end_positions": [], "example_id": [], "offset_mapping": []}
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq_ids = enc.sequence_ids(i)
        ex = examples[sample_map[i]]
        ctx_tokens = [t for t, s in enumerate(seq_ids) if s == 1]
        start_tok = end_tok = 0
        if ex["answers"]["text"] and not ex.get("is_impossible", False) and ctx_tokens:
            char_start = ex["answers"]["answer_start"][0]
            char_end = char_start + len(ex["answers"]["text"][0])
            first, last = ctx_tokens[0], ctx_tokens[-1]
            if offsets[first][0] <= char_start and offsets[last][1] >= char_end:
                start_tok = first
                while start_tok <= last and offsets[start_tok][0] <= char_start:
                    start_tok += 1
                start_tok -= 1
                end_tok = last
                while end_tok >= first and offsets[end_tok][1] >= char_end:
                    end_tok -= 1
                end_tok += 1
        out["start_positions"].append(start_tok)
        out["end_positions"].append(end_tok)
        out["example_id"].append(ex["id"])
        out["offset_mapping"].append([list(o) if s == 1 else None for o, s in zip(offsets, seq_ids)])
    columns = {k: enc[k] for k in ("input_ids", "attention_mask")}
    columns["token_type_ids"] = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    return datasets.Dataset.from_dict({**columns, **out})


DOC_STRIDE = 128
"""Tokens of overlap between the windows of a long context at the official 384-token window."""


def window_stride(max_length: int, doc_stride: int = DOC_STRIDE) -> int:
    """The window overlap used for `max_length`-token features: `doc_stride`, at most a third of the
    window (128 at the official 384; shorter windows, e.g. a small model's 128 positions, overlap less)."""
    return max(1, min(int(doc_stride), int(max_length) // 3))


@dataclass
class SpanIndex:
    """What post-processing needs of a feature set, materialised once (search scores many candidates
    on the same features)."""

    example_ids: list[str]
    """example_ids[f] = the example of feature f."""
    offsets: list[list]
    """Per feature, per token: [start, end] character span in the context, None outside it."""
    context: np.ndarray
    """n_features × width bool: token t of feature f lies in the context (a span may start/end there)."""

    @classmethod
    def of(cls, features) -> "SpanIndex":
        if isinstance(features, SpanIndex):
            return features
        ids = [str(i) for i in features["example_id"]]
        offsets = [list(o) for o in features["offset_mapping"]]
        width = max((len(o) for o in offsets), default=0)
        context = np.zeros((len(offsets), width), dtype=bool)
        for f, offs in enumerate(offsets):
            context[f, :len(offs)] = [o is not None for o in offs]
        return cls(ids, offsets, context)


def postprocess(examples: Sequence[Example], features, start_logits, end_logits, *, n_best: int = 20,
                max_answer_length: int = 30, version_2: bool = False,
                null_threshold: float = 0.0) -> dict[str, str]:
    """Answer text per example id from per-feature logits, shape (n_features, max_length) each.

    `features`: the windowed features (`prepare_features`) or their `SpanIndex`. The best span over all
    of an example's windows (score = start + end logit, among the `n_best` top starts and ends,
    end >= start, at most `max_answer_length` tokens, inside the context; ties go to the earlier
    window, then the higher-ranked start, then the higher-ranked end).
    v2.0: the answer is "" when the [CLS] score (the smallest over the windows) beats the best span
    by more than `null_threshold`.
    """
    index = SpanIndex.of(features)
    start_logits = np.asarray(start_logits)
    end_logits = np.asarray(end_logits)
    by_example: dict[str, list[int]] = collections.defaultdict(list)
    for f, ex_id in enumerate(index.example_ids):
        by_example[ex_id].append(f)
    predictions = {}
    for ex in examples:
        best_text, best_score, null_score = "", -np.inf, np.inf
        for f in by_example.get(ex["id"], []):
            s_log, e_log = start_logits[f], end_logits[f]
            null_score = min(null_score, float(s_log[0] + e_log[0]))
            ctx = np.zeros(len(s_log), dtype=bool)  # a token a span may use
            n = min(len(s_log), index.context.shape[1])
            ctx[:n] = index.context[f, :n]
            starts = np.argsort(s_log)[::-1][:n_best][:, None]  # n_best×1
            ends = np.argsort(e_log)[::-1][:n_best][None, :]  # 1×n_best
            ok = ctx[starts] & ctx[ends] & (ends >= starts) & (ends - starts + 1 <= max_answer_length)
            if not ok.any():
                continue
            scores = np.where(ok, s_log[starts] + e_log[ends], -np.inf)  # n_best×n_best
            k = int(np.argmax(scores))  # the first best in (start rank, end rank) order
            score = float(scores.flat[k])
            if score > best_score:
                s, e = int(starts[k // scores.shape[1], 0]), int(ends[0, k % scores.shape[1]])
                best_score = score
                best_text = ex["context"][index.offsets[f][s][0]:index.offsets[f][e][1]]
        if version_2 and (best_score == -np.inf or null_score - best_score > null_threshold):
            best_text = ""
        predictions[ex["id"]] = best_text
    return predictions


# --- official evaluation ------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace (official)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str, *, version_2: bool = False) -> float:
    """Token-overlap F1 of the normalised strings. v2.0's script scores 1 when both are empty (and 0
    when only one is); v1.1's scores 0 whenever nothing overlaps."""
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if version_2 and (not pred_toks or not gold_toks):
        return float(pred_toks == gold_toks)
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _gold_answers(ex: Example, version_2: bool) -> list[str]:
    texts = list(ex["answers"]["text"])
    if version_2:  # the v2.0 script drops golds that normalise to nothing; none left = no answer
        texts = [t for t in texts if normalize_answer(t)] or [""]
    return texts


def squad_metrics(predictions: Mapping[str, str], examples: Iterable[Example], version_2: bool = False) -> dict[str, float]:
    """exact_match and f1 (0-100) over `examples`; a question without a prediction scores 0.

    v2.0 adds HasAns_exact/HasAns_f1/HasAns_total and NoAns_exact/NoAns_f1/NoAns_total (the
    breakdowns appear only for groups that occur).
    """
    exact, f1, has_answer = [], [], []
    for ex in examples:
        golds = _gold_answers(ex, version_2)
        pred = predictions.get(ex["id"])
        if pred is None:
            exact.append(0.0)
            f1.append(0.0)
        else:
            exact.append(max(exact_score(pred, g) for g in golds))
            f1.append(max(f1_score(pred, g, version_2=version_2) for g in golds))
        has_answer.append(golds != [""])
    if not exact:
        raise ElasticLMError("squad_metrics: no examples to score")
    ex_arr, f1_arr, has = np.array(exact), np.array(f1), np.array(has_answer)
    result = {"exact_match": 100.0 * ex_arr.mean(), "f1": 100.0 * f1_arr.mean(), "total": float(len(ex_arr))}
    if version_2:
        for prefix, mask in (("HasAns", has), ("NoAns", ~has)):
            if mask.any():
                result[f"{prefix}_exact"] = 100.0 * ex_arr[mask].mean()
                result[f"{prefix}_f1"] = 100.0 * f1_arr[mask].mean()
                result[f"{prefix}_total"] = float(mask.sum())
    return {k: float(v) for k, v in result.items()}


def as_fractions(metrics: Mapping[str, float]) -> dict[str, float]:
    """`squad_metrics`' percentages on the 0–1 scale every other task metric of the project uses (what
    stage 2, search and retraining record; reports show them ×100, i.e. as the official percentages),
    with the counts (`total`, `HasAns_total`, ...) left out."""
    return {k: float(v) / 100.0 for k, v in metrics.items() if not k.endswith("total")}
