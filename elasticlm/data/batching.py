"""One batching and padding path for encoded rows: training steps, evaluation and distillation all
stack rows into B×N tensors through `pad_batch`."""

from __future__ import annotations

from collections.abc import Iterator
import weakref
from typing import Any

import numpy as np
import pyarrow as pa
import torch


def pad_batch(rows: list[dict[str, Any]], pad_id: int, multiple: int = 8) -> dict[str, torch.Tensor]:
    """Stack rows into B×N tensors (+ labels / span positions).

    N is the longest real length in the batch (from `attention_mask`, so rows that arrive padded, like
    QA features, are trimmed too), rounded up to a multiple of `multiple` (fewer distinct shapes for
    oneDNN to specialise on).
    """
    masks = [np.asarray(r["attention_mask"]) for r in rows]
    lengths = [int(m.sum()) for m in masks]
    n = max(lengths)
    n = min(-(-n // multiple) * multiple, max(len(m) for m in masks))
    b = len(rows)
    ids = np.full((b, n), pad_id, dtype=np.int64)
    attn = np.zeros((b, n), dtype=np.int64)
    types = np.zeros((b, n), dtype=np.int64)
    for i, (r, k) in enumerate(zip(rows, lengths)):
        ids[i, :k] = np.asarray(r["input_ids"])[:k]
        attn[i, :k] = 1
        if "token_type_ids" in r:
            types[i, :k] = np.asarray(r["token_type_ids"])[:k]
    out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(attn),
           "token_type_ids": torch.from_numpy(types)}
    for name in ("labels", "start_positions", "end_positions"):
        if name in rows[0]:
            out[name] = torch.from_numpy(np.stack([np.asarray(r[name]) for r in rows]))  # a copy: writable
    return out


def rows_of(ds, idx: list[int]) -> list[dict[str, Any]]:
    """Rows `idx` of an encoded `datasets.Dataset` (or any indexable of dicts), as dicts of numpy
    arrays / scalars (a dataset's formatted columns only; integers int64, floats float32, as its torch
    format gives them)."""
    if hasattr(ds, "column_names"):
        return columns_of(ds).rows(idx)
    return [ds[i] for i in idx]


class Columns:
    """A dataset's columns as flat numpy arrays (sequence columns: values + row offsets), read once from
    its Arrow table: a training step's rows then cost microseconds instead of Arrow row formatting."""

    def __init__(self, ds):
        names = (ds.format.get("columns") if hasattr(ds, "format") else None) or ds.column_names
        table = ds.with_format("arrow")[:]
        self.flat: dict[str, np.ndarray] = {}
        """Per-row scalar columns (labels, ...): n."""
        self._lengths: tuple[int, ...] | None = None
        self.seqs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        """Sequence columns: (values, offsets); row i is values[offsets[i]:offsets[i + 1]]."""
        for name in names:
            col = table.column(name).combine_chunks()
            if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                self.seqs[name] = (_as_torch_dtype(col.values.to_numpy(zero_copy_only=False)),
                                   col.offsets.to_numpy())
            else:
                self.flat[name] = _as_torch_dtype(col.to_numpy(zero_copy_only=False))

    def lengths(self) -> tuple[int, ...]:
        """Each row's real length (its attention mask's sum): what `group_by_length` sorts by."""
        if self._lengths is None:
            values, offsets = self.seqs["attention_mask"]
            sums = np.concatenate([[0], np.cumsum(values)])
            self._lengths = tuple(int(x) for x in sums[offsets[1:]] - sums[offsets[:-1]])
        return self._lengths

    def rows(self, idx: list[int]) -> list[dict[str, Any]]:
        out = []
        for i in idx:
            row = {k: v[o[i]:o[i + 1]] for k, (v, o) in self.seqs.items()}
            row.update({k: v[i] for k, v in self.flat.items()})
            out.append(row)
        return out


def row_lengths(ds) -> tuple[int, ...]:
    """The real length of each row of an encoded dataset (`Columns.lengths`)."""
    return columns_of(ds).lengths()


def _as_torch_dtype(a: np.ndarray) -> np.ndarray:
    """int64 for integers, float32 for floats (what a torch-formatted dataset returns)."""
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        return a.astype(np.int64, copy=False)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32, copy=False)
    return a


_COLUMNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def columns_of(ds) -> Columns:
    """`ds`'s `Columns`, read once per dataset object (datasets are immutable; a transformation makes
    a new object) and dropped with it."""
    key = (tuple(ds.format.get("columns") or ()),)
    got = _COLUMNS.get(ds)
    if got is None or got[0] != key:
        got = (key, Columns(ds))
        _COLUMNS[ds] = got
    return got[1]


def eval_batches(ds, batch_size: int, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """Padded batches of `ds` in order (evaluation)."""
    for start in range(0, len(ds), batch_size):
        yield pad_batch(rows_of(ds, list(range(start, min(start + batch_size, len(ds))))), pad_id)
