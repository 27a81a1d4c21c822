"""Fast, exact evaluation of classification/regression models on an encoded split.

The split is padded once into length-bucketed batches (rows sorted by length, so little padding is
computed) kept on the device, and every model scored on it reuses them: the supernet's paths in
search (`elasticlm.search.evaluator`) and standalone models after retraining (`evaluate_model`).
Predictions are put back in the split's order before scoring, so metrics equal an unsorted pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from elasticlm.train.engine import autocast, pad_batch, rows_of


@dataclass
class Batches:
    """An encoded split as padded, length-bucketed batches on one device."""

    batches: list[dict[str, torch.Tensor]]
    """Each with input_ids / attention_mask / token_type_ids (B×N)."""
    order: np.ndarray
    """order[i] = the split row of the i-th row across the batches."""
    references: np.ndarray
    """Labels in the split's own order."""
    tokens: int
    """Real (unpadded) tokens in the split."""

    @classmethod
    def build(cls, ds, pad_id: int, *, batch_size: int = 256, device: str | torch.device = "cpu") -> "Batches":
        lengths = np.asarray([int(sum(m)) for m in ds["attention_mask"]])
        order = np.argsort(-lengths, kind="stable")
        batches = []
        for s in range(0, len(order), batch_size):
            b = pad_batch(rows_of(ds, [int(i) for i in order[s:s + batch_size]]), pad_id)
            batches.append({k: v.to(device) for k, v in b.items() if k != "labels"})
        return cls(batches, order, np.asarray(ds["labels"]), int(lengths.sum()))

    def predict(self, logits_fn: Callable[[dict[str, torch.Tensor]], torch.Tensor], *, bf16: bool) -> np.ndarray:
        """Logits of every row in the split's order: `logits_fn(batch) -> B×C`."""
        outs = []
        device = self.batches[0]["input_ids"].device.type if self.batches else "cpu"
        with torch.inference_mode(), autocast(bf16, device):
            for b in self.batches:
                outs.append(logits_fn(b).float().cpu().numpy())
        preds = np.concatenate(outs)
        back = np.empty_like(preds)
        back[self.order] = preds
        return back


def evaluate_model(model, batches: Batches, spec, *, bf16: bool) -> dict[str, float]:
    """The task's metrics for a standalone HF classification/regression model."""
    from elasticlm.data.metrics import compute_metrics

    was = model.training
    model.eval()
    preds = batches.predict(lambda b: model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                            token_type_ids=b["token_type_ids"]).logits, bf16=bf16)
    model.train(was)
    return compute_metrics(spec, preds, batches.references)


def path_metrics(net, arch, task: str, batches: Batches, spec, *, bf16: bool) -> dict[str, float]:
    """The task's metrics for one supernet path with inherited weights, through the supernet's own head
    for `task` (equal to the extracted standalone model's on the same split)."""
    from elasticlm.data.metrics import compute_metrics

    was = net.training
    net.eval()
    preds = batches.predict(
        lambda b: net.task_logits(task, net(b["input_ids"], arch, attention_mask=b["attention_mask"],
                                            token_type_ids=b["token_type_ids"]).last_hidden_state,
                                  b["attention_mask"]), bf16=bf16)
    net.train(was)
    return compute_metrics(spec, preds, batches.references)


def majority_metrics(spec, train_labels, refs) -> dict[str, Any]:
    """The metrics of always predicting the most frequent training class (classification only; rows
    without a label, -100 such as teacher-labelled augmented copies, are not counted)."""
    from elasticlm.data.metrics import compute_metrics

    labels = np.asarray(train_labels).astype(int)
    counts = np.bincount(labels[labels >= 0], minlength=spec.num_labels)
    return compute_metrics(spec, np.full(len(refs), int(counts.argmax())), np.asarray(refs))
