"""Augmentation for task distillation: neighbours are whole words, specials and word pieces stay."""

from __future__ import annotations

import torch

from elasticlm.distill.augment import augment, neighbour_table


def test_neighbours_and_swaps(tiny_tokenizer):
    tok = tiny_tokenizer(["good", "great", "bad", "awful", "movie", "film", "##s", "the"])
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(len(tok), 8, generator=g)
    emb[tok.convert_tokens_to_ids("great")] = emb[tok.convert_tokens_to_ids("good")] * 2  # same direction
    ids = tok("the good movies")["input_ids"]  # [CLS] the good movie ##s [SEP]
    table = neighbour_table(emb, tok, sorted(set(ids)), k=2)
    good, great = tok.convert_tokens_to_ids(["good", "great"])
    assert table[good][0] == great
    assert all(not tok.convert_ids_to_tokens(n).startswith(("##", "[")) for v in table.values() for n in v)
    assert tok.cls_token_id not in table and tok.convert_tokens_to_ids("##s") not in table
    rows = {"input_ids": [ids] * 20, "attention_mask": [[1] * len(ids)] * 20, "token_type_ids": [[0] * len(ids)] * 20}
    out = augment(rows, table, 2, p=0.5, seed=1)
    assert out == augment(rows, table, 2, p=0.5, seed=1) and 0 < len(out["input_ids"]) <= 40
    for new in out["input_ids"]:
        assert new != ids and len(new) == len(ids)
        assert new[0] == ids[0] and new[-1] == ids[-1] and new[4] == ids[4]  # [CLS], [SEP], ##s untouched
