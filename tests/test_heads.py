"""Linear CKA's properties and Algorithm 1 (head merging) on constructed and real head outputs."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from elasticlm.analysis.cka import cka_matrix, linear_cka
from elasticlm.search.heads import HeadsConfig, divisible_heads, merge_heads, search_heads


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_cka_identity_orthogonal_and_scale_invariance():
    x = rand(200, 16)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    q, _ = torch.linalg.qr(rand(16, 16, seed=1))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(x, 3.7 * x) == pytest.approx(1.0, abs=1e-12)
    y = rand(200, 8, seed=2)
    assert linear_cka(x, y) == pytest.approx(linear_cka(x @ q * 0.5, y), abs=1e-10)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), abs=1e-12)
    assert 0.0 <= linear_cka(x, y) < 0.2  # independent noise: small
    # translation: centring removes it
    assert linear_cka(x + 5.0, y) == pytest.approx(linear_cka(x, y), abs=1e-10)


def test_cka_against_the_hsic_formula():
    x, y = rand(50, 6, seed=3), rand(50, 4, seed=4)
    n = 50
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    hsic = lambda a, b: (a * b).sum()  # noqa: E731
    want = float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))
    assert linear_cka(x, y) == pytest.approx(want, rel=1e-10)
    m = cka_matrix([x[:, :3], y, x[:, :3] * 2])
    assert m[0, 2] == pytest.approx(1.0) and m[0, 1] == pytest.approx(linear_cka(x[:, :3], y))
    assert np.allclose(m, m.T)


def test_merge_keeps_distinct_heads_and_drops_duplicates():
    base = [rand(300, 8, seed=s) for s in range(4)]
    q, _ = torch.linalg.qr(rand(8, 8, seed=9))
    # heads: 0, 1, dup(0), 2, dup(1) rotated and scaled, 3
    heads = [base[0], base[1], base[0] * 2, base[2], base[1] @ q, base[3]]
    cka = cka_matrix(heads)
    assert merge_heads(cka, 0.9) == [0, 1, 3, 5]
    assert divisible_heads(4, 48) == 4 and divisible_heads(5, 48) == 4 and divisible_heads(7, 192) == 6


def test_head_search_on_a_supernet_path_divides_the_width(tiny_space):
    from elasticlm.train.supernet import build_supernet

    net = build_supernet(tiny_space, fixed=False, seed=0)
    arch = tiny_space.sample(random.Random(1), net.widths())
    ids = torch.randint(5, tiny_space.vocab_size, (6, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[3:, 15:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    final, records, mats = search_heads(net, arch, [batch], HeadsConfig(eta=0.9))
    assert tiny_space.count_params(final) == tiny_space.count_params(arch)  # heads change no parameter
    for layer, rec in zip(final, records):
        assert tiny_space.attention_width(layer.kind) % layer.heads == 0
        assert layer.heads == rec["heads_after"] <= len(rec["kept"])
        assert mats[f"layer{rec['layer']}"].shape == (rec["heads_before"],) * 2
    # η = 1 keeps every head (no two random heads are identical)
    full, _, _ = search_heads(net, arch, [batch], HeadsConfig(eta=1.0))
    assert [l.heads for l in full] == [l.heads for l in arch]
