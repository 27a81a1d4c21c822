"""One batching and padding path for encoded rows: training steps, evaluation and distillation all
stack rows into B×N tensors through `pad_batch`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def pad_batch(rows: list[dict[str, Any]], pad_id: int, multiple: int = 8) -> dict[str, torch.Tensor]:
    """Stack rows into B×N tensors (+ labels / span positions).

    N is the longest real length in the batch (from `attention_mask`, so rows that arrive padded, like
    QA features, are trimmed too), rounded up to a multiple of `multiple` (fewer distinct shapes for
    oneDNN to specialise on).
    """
    lengths = [int(torch.as_tensor(r["attention_mask"]).sum()) for r in rows]
    n = max(lengths)
    n = min(-(-n // multiple) * multiple, max(len(r["input_ids"]) for r in rows))
    b = len(rows)
    out = {"input_ids": torch.full((b, n), pad_id, dtype=torch.long),
           "attention_mask": torch.zeros((b, n), dtype=torch.long),
           "token_type_ids": torch.zeros((b, n), dtype=torch.long)}
    for i, (r, k) in enumerate(zip(rows, lengths)):
        out["input_ids"][i, :k] = torch.as_tensor(r["input_ids"])[:k]
        out["attention_mask"][i, :k] = 1
        if "token_type_ids" in r:
            out["token_type_ids"][i, :k] = torch.as_tensor(r["token_type_ids"])[:k]
    for name in ("labels", "start_positions", "end_positions"):
        if name in rows[0]:
            out[name] = torch.stack([torch.as_tensor(r[name]) for r in rows])
    return out


def rows_of(ds, idx: list[int]) -> list[dict[str, Any]]:
    """Rows `idx` of a torch-formatted `datasets.Dataset` (or any indexable of dicts)."""
    if hasattr(ds, "column_names"):
        chunk = ds[idx]  # dict of column -> list
        return [{k: v[j] for k, v in chunk.items()} for j in range(len(idx))]
    return [ds[i] for i in idx]


def eval_batches(ds, batch_size: int, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """Padded batches of `ds` in order (evaluation)."""
    for start in range(0, len(ds), batch_size):
        yield pad_batch(rows_of(ds, list(range(start, min(start + batch_size, len(ds))))), pad_id)
