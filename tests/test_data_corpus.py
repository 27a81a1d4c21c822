"""MLM corpora: packing into cached blocks, the held-out split, bad input, and masking statistics."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from elasticlm.data import corpus
from elasticlm.data.corpus import MLMCollator, load_corpus_texts, packed_blocks
from elasticlm.data.tasks import load_task
from elasticlm.errors import ElasticLMError

WORDS = "the a cat dog sat ran on mat under tree quickly slowly big small red blue".split()


@pytest.fixture
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer(WORDS + ["."])  # ids: specials 0-4, words 5-20, "." 21


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) + " ." for _ in range(n)]


def test_packed_blocks_layout_and_cache(tmp_path: Path, cache: Path, tokenizer, monkeypatch) -> None:
    lines = sentences(400)
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(lines) + "\n\n")
    blocks = packed_blocks(str(src), tokenizer, 16, tokenizer_id="tiny")

    stream = [t for line in lines for t in tokenizer(line, add_special_tokens=False)["input_ids"]]
    assert len(blocks) == len(stream) // 14 and blocks.num_tokens == len(blocks) * 16
    item = blocks[3]
    assert set(item) == {"input_ids", "attention_mask", "token_type_ids", "special_tokens_mask"}
    assert item["input_ids"].shape == (16,) and item["input_ids"].dtype == torch.int64
    assert item["input_ids"][0] == tokenizer.cls_token_id and item["input_ids"][-1] == tokenizer.sep_token_id
    assert item["input_ids"][1:-1].tolist() == stream[3 * 14: 4 * 14]  # source order, no gaps
    assert item["special_tokens_mask"].tolist() == [1] + [0] * 14 + [1]
    assert item["attention_mask"].all() and not item["token_type_ids"].any()
    assert (blocks.folder.parent == cache / "corpora") and (blocks.folder / "blocks.bin").is_file()

    # held-out: the last 1% of the blocks (at least one), disjoint from train
    n = len(blocks)
    assert len(blocks.heldout) == max(1, round(0.01 * n)) and len(blocks.train) + len(blocks.heldout) == n
    assert torch.equal(blocks.heldout[0]["input_ids"], blocks[len(blocks.train)]["input_ids"])
    assert torch.equal(blocks.heldout[-1]["input_ids"], blocks[n - 1]["input_ids"])

    # a second call reads the cache and does not tokenize again
    monkeypatch.setattr(corpus, "_build", lambda *a, **k: pytest.fail("re-tokenized a cached corpus"))
    again = packed_blocks(str(src), tokenizer, 16, tokenizer_id="tiny")
    assert again.folder == blocks.folder and torch.equal(again[5]["input_ids"], blocks[5]["input_ids"])
    # ... but a different block size or an edited file is a different entry
    assert corpus.corpus_cache_dir(str(src), tokenizer, 32, "tiny") != blocks.folder
    src.write_text("\n".join(lines[:200]) + "\n")
    os.utime(src, ns=(1, 1))
    assert corpus.corpus_cache_dir(str(src), tokenizer, 16, "tiny") != blocks.folder


def test_folder_source_and_pickling(tmp_path: Path, cache: Path, tokenizer) -> None:
    import pickle

    (tmp_path / "docs/sub").mkdir(parents=True)
    (tmp_path / "docs/b.txt").write_text("dog ran .\n")
    (tmp_path / "docs/sub/c.txt").write_text("red tree .\n")
    (tmp_path / "docs/a.txt").write_text("the cat sat .\n\n")
    (tmp_path / "docs/skip.md").write_text("not text")
    assert list(load_corpus_texts(str(tmp_path / "docs"))) == ["the cat sat .", "dog ran .", "red tree ."]
    (tmp_path / "docs/more.txt").write_text("\n".join(sentences(50)))
    blocks = packed_blocks(str(tmp_path / "docs"), tokenizer, 12, tokenizer_id="tiny")
    copy = pickle.loads(pickle.dumps(blocks.train))  # DataLoader workers get a picklable view
    assert len(copy) == len(blocks.train) and torch.equal(copy[0]["input_ids"], blocks[0]["input_ids"])


def test_corpus_bad_input_leaves_no_cache_entry(tmp_path: Path, cache: Path, tokenizer) -> None:
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("the cat sat .\n")
    with pytest.raises(ElasticLMError, match=r"corpus '.*tiny.txt' gives 0 block\(s\) of 16 tokens"):
        packed_blocks(str(tiny), tokenizer, 16, tokenizer_id="tiny")
    assert not any((cache / "corpora").iterdir())  # the temporary folder is gone, nothing half-written

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("the cat\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(ElasticLMError, match=r"latin1.txt: not UTF-8 text \(byte 0xe9 on line 2\)"):
        packed_blocks(str(bad), tokenizer, 16, tokenizer_id="tiny")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ElasticLMError, match=r"empty.txt: file is empty"):
        packed_blocks(str(empty), tokenizer, 16, tokenizer_id="tiny")
    with pytest.raises(ElasticLMError, match=r"missing.txt: corpus file or folder not found"):
        list(load_corpus_texts(str(tmp_path / "missing.txt")))
    assert not any((cache / "corpora").iterdir())


def test_offline_with_nothing_cached_names_the_fetch_command(cache: Path, tokenizer, monkeypatch) -> None:
    monkeypatch.setenv("ELASTICLM_OFFLINE", "1")
    for load in (lambda: packed_blocks("demo", tokenizer, 16, tokenizer_id="tiny"),
                 lambda: load_task("rt-polarity"), lambda: load_task("bbc-topic")):
        with pytest.raises(ElasticLMError, match=r"ELASTICLM_OFFLINE is set; run `elasticlm data fetch demo`") as info:
            load()
        assert "\n" not in str(info.value)
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers == []
    with pytest.raises(ElasticLMError, match=r"corpus 'wikitext:wikitext-2-raw-v1': ELASTICLM_OFFLINE is set"):
        list(load_corpus_texts("wikitext:wikitext-2-raw-v1"))

    from elasticlm.cli import main

    assert main(["data", "show", "rt-rating"]) == 2


# --- masking ---------------------------------------------------------------------------------------

def batch_of_blocks(n: int, length: int, pad_from: int) -> list[dict]:
    rng = np.random.default_rng(1)
    examples = []
    for _ in range(n):
        ids = rng.integers(5, 22, size=length)
        ids[0], ids[pad_from - 1] = 2, 3  # [CLS] ... [SEP], then padding
        ids[pad_from:] = 0
        attention = (np.arange(length) < pad_from).astype(np.int64)
        examples.append({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(attention)})
    return examples


def test_mlm_masking_statistics(tokenizer) -> None:
    examples = batch_of_blocks(512, 128, pad_from=100)
    original = torch.stack([e["input_ids"] for e in examples])  # (512, 128)
    out = MLMCollator(tokenizer, seed=0)(examples)
    eligible = (original >= 5) & (torch.arange(128) < 100)
    selected = out["labels"] != -100
    assert not (selected & ~eligible).any()  # never [CLS]/[SEP]/padding
    assert torch.equal(out["labels"][selected], original[selected])
    assert torch.equal(out["input_ids"][~selected], original[~selected])
    rate = selected.sum().item() / eligible.sum().item()
    assert abs(rate - 0.15) < 0.005  # ~50k eligible tokens: sd of the rate ~0.0016

    n_sel = selected.sum().item()
    masked = (out["input_ids"] == tokenizer.mask_token_id) & selected
    kept = (out["input_ids"] == original) & selected
    replaced = selected & ~masked & ~kept
    assert abs(masked.sum().item() / n_sel - 0.8) < 0.015
    # a random replacement equals the original with probability 1/17, so "kept" gains ~0.6%
    assert abs(kept.sum().item() / n_sel - (0.1 + 0.1 / 17)) < 0.015
    assert abs(replaced.sum().item() / n_sel - 0.1 * 16 / 17) < 0.015
    assert (out["input_ids"][replaced] >= 5).all()  # random tokens are never special tokens
    assert torch.equal(out["attention_mask"], torch.stack([e["attention_mask"] for e in examples]))


def test_mlm_collator_is_seeded_and_pads(tokenizer) -> None:
    examples = batch_of_blocks(8, 64, pad_from=64)
    a = MLMCollator(tokenizer, seed=3)(examples)
    b = MLMCollator(tokenizer, generator=torch.Generator().manual_seed(3))(examples)
    c = MLMCollator(tokenizer, seed=4)(examples)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])
    ragged = MLMCollator(tokenizer, seed=0)([{"input_ids": [2, 5, 6, 3]}, {"input_ids": [2, 7, 3]}])
    assert ragged["input_ids"].shape == (2, 4) and ragged["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert ragged["labels"][1, 3] == -100 and ragged["input_ids"][1, 3] == tokenizer.pad_token_id
