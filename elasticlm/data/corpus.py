"""Masked-LM pretraining corpora: text sources, token blocks cached on disk, and masking.

Sources (`load_corpus_texts`):

    "demo"            the offline demo corpus (BBC News + Rotten Tomatoes train text + Penn
                      Treebank), built from registry packages; see `elasticlm.data.demo`
    a .txt file       one text per non-empty line
    a folder          every *.txt below it (sorted by path), one text per non-empty line
    NAME[:CONFIG]     a `datasets` hub dataset (its "train" split, "text" column), when reachable

Packing (`packed_blocks`): every text is tokenized without special tokens, all tokens are
concatenated in source order and cut into blocks of `block_size - 2` tokens, each wrapped as
[CLS] ... [SEP]; the last, partial block is dropped, so every block is exactly `block_size` long and
needs no padding. The token ids are stored as an int32 matrix (n_blocks, block_size) in
`cache_root()/corpora/<slug>-<key>/blocks.bin` with `meta.json`, and memory-mapped on later calls:
the key hashes the source (for files: path, size and mtime), the tokenizer id, its vocabulary size
and the block size, so a second call with the same arguments does not tokenize again. The folder is
written to a temporary name and renamed when complete.

Held-out split: `blocks.heldout` is the last 1% of the blocks (at least one), `blocks.train` the
rest; both are fixed for a given corpus.

Masking (`MLMCollator`): BERT's rule — each non-special, non-padding token is selected with
probability 0.15; a selected token becomes [MASK] with probability 0.8, a random non-special token
with 0.1, and stays unchanged with 0.1. `labels` hold the original id at selected positions and
-100 elsewhere.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from elasticlm.data.cache import cache_key, cache_root, file_fingerprint, offline
from elasticlm.data.textfile import read_lines
from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_dir

FORMAT_VERSION = 1
HELDOUT_FRACTION = 0.01
TOKENIZE_BATCH = 1000  # texts per tokenizer call


# --- sources ------------------------------------------------------------------------------------

def _is_path_like(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.endswith(".txt") or Path(source).exists()


def _text_files(source: str) -> list[Path]:
    """The .txt files a path source names (raises when there are none)."""
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ElasticLMError(f"{path}: no .txt files in this folder")
        return files
    raise ElasticLMError(f"{path}: corpus file or folder not found")


def load_corpus_texts(source: str) -> Iterator[str]:
    """Texts of a corpus source, in a fixed order; see the module docstring."""
    if source == "demo":
        from elasticlm.data.demo import demo_corpus_texts

        yield from demo_corpus_texts()
    elif _is_path_like(source):
        for path in _text_files(source):
            for line in read_lines(path):
                if line.strip():
                    yield line.strip()
    else:
        yield from _hub_texts(source)


def _hub_texts(source: str) -> Iterator[str]:
    name, _, config = source.partition(":")
    if offline():
        raise ElasticLMError(
            f"corpus '{source}': ELASTICLM_OFFLINE is set and hub datasets cannot be downloaded; "
            f"use --corpus demo or a .txt file/folder"
        )
    from elasticlm.data.glue import hub_reachable

    if not hub_reachable():
        raise ElasticLMError(
            f"corpus '{source}' is neither a file/folder nor reachable on the datasets hub; "
            f"use --corpus demo or a .txt file/folder"
        )
    import datasets

    try:
        ds = datasets.load_dataset(name, config or None, split="train")
    except Exception as err:  # noqa: BLE001 - any hub failure becomes one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ElasticLMError(f"corpus '{source}': loading from the datasets hub failed ({first})") from None
    if "text" not in ds.column_names:
        raise ElasticLMError(f"corpus '{source}': missing column 'text' (columns: {', '.join(ds.column_names)})")
    for text in ds["text"]:
        if text and text.strip():
            yield text.strip()


def _source_fingerprint(source: str) -> Any:
    """What identifies the corpus content for the cache key."""
    if source == "demo":
        from elasticlm.data import demo

        return ["demo", sorted(f"{n}=={v}" for n, v, _ in demo.PACKAGES.values()), demo.SPLIT_SEED,
                demo.CORPUS_VERSION]
    if _is_path_like(source):
        return file_fingerprint(_text_files(source))
    return ["hub", source]


# --- packed blocks ------------------------------------------------------------------------------

class PackedBlocks:
    """Memory-mapped token blocks: `len()` blocks, `[i]` -> a dict of (block_size,) int64 tensors
    input_ids, attention_mask (all 1), token_type_ids (all 0), special_tokens_mask."""

    def __init__(self, folder: Path, start: int = 0, stop: int | None = None):
        self.folder = Path(folder)
        self.meta = json.loads((self.folder / "meta.json").read_text())
        self.block_size: int = self.meta["block_size"]
        n = self.meta["n_blocks"]
        self.start, self.stop = start, n if stop is None else stop
        self._ids: np.ndarray | None = None  # opened lazily, so the object pickles to workers
        self._special = np.asarray(self.meta["special_ids"], dtype=np.int32)

    @property
    def ids(self) -> np.ndarray:
        """All blocks' ids, (n_blocks, block_size) int32, memory-mapped read-only."""
        if self._ids is None:
            self._ids = np.memmap(self.folder / "blocks.bin", dtype=np.int32, mode="r",
                                  shape=(self.meta["n_blocks"], self.block_size))
        return self._ids

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_ids": None}

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        row = np.array(self.ids[self.start + (i % len(self))], dtype=np.int64)  # (block_size,)
        return {
            "input_ids": torch.from_numpy(row),
            "attention_mask": torch.ones(self.block_size, dtype=torch.int64),
            "token_type_ids": torch.zeros(self.block_size, dtype=torch.int64),
            "special_tokens_mask": torch.from_numpy(np.isin(row, self._special).astype(np.int64)),
        }

    @property
    def num_tokens(self) -> int:
        return len(self) * self.block_size

    def _view(self, start: int, stop: int) -> "PackedBlocks":
        view = PackedBlocks.__new__(PackedBlocks)
        view.__dict__.update(self.__getstate__())
        view.start, view.stop = start, stop
        return view

    @property
    def _cut(self) -> int:
        n = self.meta["n_blocks"]
        return n - max(1, round(HELDOUT_FRACTION * n))

    @property
    def train(self) -> "PackedBlocks":
        """All blocks but the held-out ones."""
        return self._view(0, self._cut)

    @property
    def heldout(self) -> "PackedBlocks":
        """The last 1% of the blocks (at least one), for MLM evaluation."""
        return self._view(self._cut, self.meta["n_blocks"])

    def __repr__(self) -> str:
        return (f"PackedBlocks({self.meta['source']!r}, {len(self)} blocks x {self.block_size} tokens, "
                f"tokenizer={self.meta['tokenizer_id']!r})")


def corpus_cache_dir(source: str, tokenizer, block_size: int, tokenizer_id: str) -> Path:
    """Where `packed_blocks` keeps (or will keep) this corpus."""
    digest = cache_key({"format": FORMAT_VERSION, "source": _source_fingerprint(source),
                        "tokenizer": tokenizer_id, "vocab": len(tokenizer), "block_size": block_size})
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(source).name or source).strip("-")[:40] or "corpus"
    return cache_root() / "corpora" / f"{slug}-{block_size}-{digest}"


def packed_blocks(source: str, tokenizer, block_size: int = 128, *, tokenizer_id: str,
                  progress: bool = False) -> PackedBlocks:
    """The corpus `source` tokenized with `tokenizer` and packed into `block_size`-token blocks,
    built once and memory-mapped from the cache afterwards (see the module docstring)."""
    if block_size < 8:
        raise ElasticLMError(f"block_size {block_size} is too small (need at least 8)")
    folder = corpus_cache_dir(source, tokenizer, block_size, tokenizer_id)
    if (folder / "meta.json").is_file():
        return PackedBlocks(folder)
    with atomic_dir(folder) as tmp:
        _build(load_corpus_texts(source), tokenizer, block_size, tmp, progress=progress,
               meta={"source": source, "tokenizer_id": tokenizer_id})
    return PackedBlocks(folder)


def _build(texts: Iterable[str], tokenizer, block_size: int, out: Path, *, progress: bool,
           meta: dict[str, Any]) -> None:
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise ElasticLMError(f"tokenizer {meta['tokenizer_id']}: needs [CLS]/[SEP] tokens for MLM blocks")
    body = block_size - 2
    started = last_report = time.monotonic()
    pending: list[int] = []  # tokens not yet in a block (< body after each flush)
    n_blocks = n_texts = 0
    with open(out / "blocks.bin", "wb") as fh:
        for batch in _batches(texts, TOKENIZE_BATCH):
            for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
                pending.extend(ids)
            n_texts += len(batch)
            full = len(pending) // body
            if full:
                chunk = np.asarray(pending[: full * body], dtype=np.int32).reshape(full, body)
                blocks = np.empty((full, block_size), dtype=np.int32)  # (full, block_size)
                blocks[:, 0], blocks[:, 1:-1], blocks[:, -1] = cls_id, chunk, sep_id
                fh.write(blocks.tobytes())
                n_blocks += full
                del pending[: full * body]
            if progress and time.monotonic() - last_report > 2.0:
                print(f"  tokenized {n_texts:,} texts -> {n_blocks:,} blocks", flush=True)
                last_report = time.monotonic()
    if progress:
        print(f"  tokenized {n_texts:,} texts -> {n_blocks:,} blocks of {block_size} tokens", flush=True)
    if n_blocks < 2:
        raise ElasticLMError(
            f"corpus '{meta['source']}' gives {n_blocks} block(s) of {block_size} tokens; need at least 2 "
            f"(more text or a smaller block size)"
        )
    meta = {**meta, "format": FORMAT_VERSION, "block_size": block_size, "n_blocks": n_blocks,
            "n_texts": n_texts, "vocab_size": len(tokenizer), "special_ids": sorted(tokenizer.all_special_ids),
            "seconds": round(time.monotonic() - started, 2)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def probe_batches(rows, n: int, batch_size: int = 16) -> list[dict[str, torch.Tensor]]:
    """`n` of `rows` (block dicts; cycled when there are fewer) stacked into batches of `batch_size`:
    the fixed probe set that PCA growth and block similarity run on."""
    picked = [rows[i % len(rows)] for i in range(n)]
    return [{k: torch.stack([r[k] for r in picked[s:s + batch_size]]) for k in ("input_ids", "attention_mask",
                                                                                "token_type_ids")}
            for s in range(0, len(picked), batch_size)]


# --- masking ------------------------------------------------------------------------------------

class MLMCollator:
    """Batch examples and mask them for MLM (15% selected; 80% [MASK], 10% random, 10% kept).

    Examples are dicts with `input_ids` (and optionally attention_mask, token_type_ids,
    special_tokens_mask) as lists or 1-d tensors; shorter ones are right-padded with the pad id.
    Returns input_ids (masked), attention_mask, token_type_ids, labels: (batch, seq) int64.
    Pass `generator` (a torch.Generator) or `seed` for reproducible masks.
    """

    def __init__(self, tokenizer, mlm_probability: float = 0.15, *, mask_ratio: float = 0.8,
                 random_ratio: float = 0.1, generator: torch.Generator | None = None,
                 seed: int | None = None):
        if tokenizer.mask_token_id is None:
            raise ElasticLMError("MLMCollator: the tokenizer has no [MASK] token")
        self.mask_id = int(tokenizer.mask_token_id)
        self.pad_id = int(tokenizer.pad_token_id or 0)
        self.special_ids = torch.tensor(sorted(tokenizer.all_special_ids), dtype=torch.int64)
        vocab = torch.arange(len(tokenizer))
        self.random_ids = vocab[~torch.isin(vocab, self.special_ids)]  # replacement candidates
        self.p, self.mask_ratio, self.random_ratio = mlm_probability, mask_ratio, random_ratio
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator

    def _stack(self, examples: Sequence[dict], key: str, fill: int) -> torch.Tensor | None:
        if key not in examples[0]:
            return None
        rows = [torch.as_tensor(ex[key], dtype=torch.int64) for ex in examples]
        out = torch.full((len(rows), max(len(r) for r in rows)), fill, dtype=torch.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def __call__(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        input_ids = self._stack(examples, "input_ids", self.pad_id)  # (batch, seq)
        assert input_ids is not None
        attention = self._stack(examples, "attention_mask", 0)
        if attention is None:
            lengths = torch.tensor([len(ex["input_ids"]) for ex in examples])
            attention = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
        token_types = self._stack(examples, "token_type_ids", 0)
        if token_types is None:
            token_types = torch.zeros_like(input_ids)
        special = self._stack(examples, "special_tokens_mask", 1)
        if special is None:
            special = torch.isin(input_ids, self.special_ids).long()
        eligible = (special == 0) & (attention == 1)

        g = self.generator
        selected = (torch.rand(input_ids.shape, generator=g) < self.p) & eligible
        action = torch.rand(input_ids.shape, generator=g)  # < 0.8 mask, < 0.9 random, else keep
        to_mask = selected & (action < self.mask_ratio)
        to_random = selected & (action >= self.mask_ratio) & (action < self.mask_ratio + self.random_ratio)
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
        masked = input_ids.clone()
        masked[to_mask] = self.mask_id
        picks = torch.randint(len(self.random_ids), (int(to_random.sum()),), generator=g)
        masked[to_random] = self.random_ids[picks]
        return {"input_ids": masked, "attention_mask": attention, "token_type_ids": token_types, "labels": labels}
