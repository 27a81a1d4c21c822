"""Fast, exact evaluation of task models (any task kind: `elasticlm.kinds`) on an encoded split.

The split is padded once into length-bucketed batches (rows sorted by length, so little padding is
computed) kept on the device, and every model scored on it reuses them: the supernet's paths in
search (`elasticlm.search.evaluator`) and standalone models after retraining (`evaluate_model`).
Predictions are put back in the split's order before scoring, so metrics equal an unsorted pass.

The task's kind decides what is scored (`TaskKind.scoring_rows` / `metrics`). QA (SQuAD): the rows
are the examples' windowed features (`squad.prepare_features`); a model's B×N×2 start/end logits are
padded back to the window width, the best span per example is picked over its windows
(`squad.postprocess`, on a `SpanIndex` built once) and scored with the official EM/F1
(`squad.squad_metrics`), recorded as 0–1 fractions like every other metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from elasticlm.data.batching import pad_batch, row_lengths, rows_of
from elasticlm.errors import ElasticLMError
from elasticlm.kinds import SpanQA, compute_metrics, kind_of
from elasticlm.runtime import autocast


@dataclass
class Batches:
    """An encoded split as padded, length-bucketed batches on one device."""

    batches: list[dict[str, torch.Tensor]]
    """Each with input_ids / attention_mask / token_type_ids (B×N)."""
    order: np.ndarray
    """order[i] = the split row of the i-th row across the batches."""
    references: np.ndarray
    """Labels in the split's own order (empty for rows without labels, e.g. QA features)."""
    tokens: int
    """Real (unpadded) tokens in the split."""
    width: int = 0
    """The longest row (QA features: the window); per-token outputs are padded back to it."""
    scorer: Any = None
    """What the task kind scores with besides the labels (QA: the `QASplit` the rows are windows of)."""

    @classmethod
    def build(cls, ds, pad_id: int, *, batch_size: int = 256, device: str | torch.device = "cpu",
              scorer: Any = None) -> "Batches":
        """`ds`: encoded rows (input_ids, attention_mask, token_type_ids, + labels to score against)."""
        if len(ds) == 0:
            raise ElasticLMError("cannot evaluate on an empty split")
        inputs = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in ds.column_names]
        rows = [{k: r[k] for k in inputs if k in r} for r in rows_of(ds, list(range(len(ds))))]
        lengths = np.asarray(row_lengths(ds))
        order = np.argsort(-lengths, kind="stable")
        batches = []
        for s in range(0, len(order), batch_size):
            b = pad_batch([rows[int(i)] for i in order[s:s + batch_size]], pad_id)
            batches.append({k: v.to(device) for k, v in b.items()})
        refs = np.asarray(ds["labels"]) if "labels" in ds.column_names else np.zeros(0)
        width = max(len(r["input_ids"]) for r in rows)
        return cls(batches, order, refs, int(lengths.sum()), int(width), scorer)

    @classmethod
    def for_qa(cls, examples, tokenizer, max_length: int, *, stride: int | None = None, version_2: bool,
               batch_size: int = 256, device: str | torch.device = "cpu") -> "Batches":
        """Window `examples` (SQuAD examples) into `max_length`-token features and pad them once."""
        feats, qa = SpanQA.windows(examples, tokenizer, max_length, stride=stride, version_2=version_2)
        return cls.build(feats, tokenizer.pad_token_id or 0, batch_size=batch_size, device=device, scorer=qa)

    @classmethod
    def for_task(cls, spec, rows, *, pad_id: int, tokenizer=None, max_length: int | None = None,
                 batch_size: int = 256, device: str | torch.device = "cpu") -> "Batches":
        """One split of task `spec`, ready to score: the rows its kind scores (`TaskKind.scoring_rows`;
        QA: the raw examples windowed into `max_length`-token features, which needs the tokenizer)
        padded once (`build`)."""
        feats, scorer = kind_of(spec).scoring_rows(spec, rows, tokenizer=tokenizer, max_length=max_length)
        return cls.build(feats, pad_id, batch_size=batch_size, device=device, scorer=scorer)

    def predict(self, logits_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], *, bf16: bool) -> np.ndarray:
        """Logits of every row in the split's order: `logits_fn(batch) -> B×C`, or B×N×2 per-token
        (QA start/end) logits, returned n×width×2 with positions past a batch's N at -1e4."""
        outs = []
        device = self.batches[0]["input_ids"].device.type if self.batches else "cpu"
        with torch.inference_mode(), autocast(bf16, device):
            for b in self.batches:
                out = logits_fn(b).float().cpu().numpy()
                if out.ndim == 3 and out.shape[1] < self.width:  # B×N×2 -> B×width×2
                    out = np.pad(out, ((0, 0), (0, self.width - out.shape[1]), (0, 0)), constant_values=-1e4)
                outs.append(out)
        preds = np.concatenate(outs)
        back = np.empty_like(preds)
        back[self.order] = preds
        return back

    def metrics(self, spec, preds: np.ndarray) -> dict[str, float]:
        """The task's metrics of `preds` (in the split's order), as its kind scores them (QA: EM/F1
        through span post-processing; else `compute_metrics` against the labels)."""
        return kind_of(spec).metrics(spec, preds, self.references, self.scorer)


def model_inputs(model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask (+ token_type_ids for models with segments, e.g. not MPNet)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if getattr(model.config, "type_vocab_size", 0) and "token_type_ids" in batch:
        inputs["token_type_ids"] = batch["token_type_ids"]
    return inputs


def evaluate_model(model, batches: Batches, spec, *, bf16: bool) -> dict[str, float]:
    """The task's metrics for a standalone HF model with the task kind's head."""
    return batches.metrics(spec, model_predictions(model, batches, spec, bf16=bf16))


def model_predictions(model, batches: Batches, spec, *, bf16: bool) -> np.ndarray:
    """A standalone HF model's outputs (its task kind's logits layout) for every row, in split order."""
    kind = kind_of(spec)
    was = model.training
    model.eval()
    preds = batches.predict(lambda b: kind.logits(model(**model_inputs(model, b))), bf16=bf16)
    model.train(was)
    return preds


def path_metrics(net, arch, task: str, batches: Batches, spec, *, bf16: bool) -> dict[str, float]:
    """The task's metrics for one supernet path with inherited weights, through the supernet's own head
    for `task` (equal to the extracted standalone model's on the same split)."""
    return batches.metrics(spec, path_predictions(net, arch, task, batches, bf16=bf16))


def path_predictions(net, arch, task: str, batches: Batches, *, bf16: bool) -> np.ndarray:
    """One supernet path's outputs through its head for `task` for every row, in split order."""
    was = net.training
    net.eval()
    preds = batches.predict(
        lambda b: net.task_logits(task, net(b["input_ids"], arch, attention_mask=b["attention_mask"],
                                            token_type_ids=b["token_type_ids"]).last_hidden_state,
                                  b["attention_mask"]), bf16=bf16)
    net.train(was)
    return preds


def majority_metrics(spec, train_labels, refs) -> dict[str, Any]:
    """The metrics of always predicting the most frequent training class (classification only; rows
    without a label, -100 such as teacher-labelled augmented copies, are not counted)."""

    labels = np.asarray(train_labels).astype(int)
    counts = np.bincount(labels[labels >= 0], minlength=kind_of(spec).num_labels(spec))
    return compute_metrics(spec, np.full(len(refs), int(counts.argmax())), np.asarray(refs))
