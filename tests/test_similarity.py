"""Block similarity (the report's Fig. 3b/6): every candidate of a layer sees the same input, and
`elasticlm ablate`'s similarity.json is what the report draws."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from elasticlm.analysis.cka import linear_cka
from elasticlm.analysis.similarity import block_similarity
from elasticlm.models import Capture
from elasticlm.models.folder import save_supernet
from elasticlm.space import Architecture, LayerChoice, SearchSpace
from elasticlm.train.supernet import build_supernet

from conftest import STAGE_VOCAB

SPACE = SearchSpace(hidden_size=32, num_layers=3, num_heads=4, embedding_size=16, vocab_size=len(STAGE_VOCAB),
                    max_position_embeddings=32)


def batches(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(2):
        ids = torch.randint(5, len(STAGE_VOCAB), (4, 12), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 8:] = 0  # padding never counts
        ids[0, 8:] = 0
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)})
    return out


def test_each_candidate_sees_the_prefix_paths_output():
    net = build_supernet(SPACE, fixed=False, seed=0)
    layer, data = 1, batches()
    sim = block_similarity(net, data, layer, seed=3, prefixes=1)
    k = len(SPACE.candidates)
    m = np.asarray(sim["matrix"])
    assert m.shape == (k, k) and np.allclose(np.diag(m), 1) and np.allclose(m, m.T)
    assert ((m >= -1e-9) & (m <= 1 + 1e-9)).all() and sim["tokens"] == 2 * (4 * 12 - 4)
    assert sim["blocks"] == [f"{a}/{b}" for a, b in SPACE.candidates]
    # the reference: whole-path forwards that differ only in layer `layer`; what its block adds compared
    base = SPACE.sample(random.Random("3:similarity:0"), net.widths())
    widths = net.widths()
    reps = []
    for kind, sharing in SPACE.candidates:
        arch = Architecture(base[:layer] + (LayerChoice(kind, sharing, widths[(layer, kind, sharing)], 4),)
                            + base[layer + 1:])
        net.eval()
        with torch.no_grad():
            hs = [net(b["input_ids"], arch, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"],
                      capture=Capture(block_output=True)).hidden_states for b in data]
        hs = [(h[layer + 1] - h[layer])[b["attention_mask"].bool()] for h, b in zip(hs, data)]
        reps.append(torch.cat(hs))
    for i in range(k):
        for j in range(k):
            assert m[i, j] == pytest.approx(linear_cka(reps[i], reps[j]), abs=2e-4)


def test_ablation_writes_similarity_json_the_report_draws(teacher_dir, word_corpus, tmp_path, monkeypatch):
    from elasticlm.experiment.ablation import block_similarity_file
    from elasticlm.report import write_report

    monkeypatch.setenv("ELASTICLM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "abl"
    assert block_similarity_file(out, 0, say=lambda s: None) is None  # nothing to compare yet
    info = {"stage": "pretrain", "config": {"corpus": str(word_corpus), "teacher": str(teacher_dir), "max_length": 16}}
    for variant, seed in (("full", 0), ("classic-kd", 1)):
        save_supernet(build_supernet(SPACE, fixed=False, seed=seed), out / variant / "seed-0" / "supernet", info)
    lines: list[str] = []
    sim = block_similarity_file(out, 0, probe_blocks=8, say=lines.append)
    saved = json.loads((out / "similarity.json").read_text())
    assert saved == sim and set(sim) == {"relational", "classic"} and len(lines) == 2
    for v in sim.values():
        assert v["layer"] == 1 and len(v["matrix"]) == len(SPACE.candidates) and 0 <= v["mean_off_diagonal"] <= 1
    (out / "ablation.json").write_text(json.dumps({"metric": "accuracy", "rows": [
        {"variant": "full", "seeds": 1, "dev_mean": 0.8, "dev_std": 0.0}]}))
    text = write_report(out).read_text()
    assert "Mean CKA between different candidate blocks" in text and "block_similarity.png" in text
    assert (out / "report" / "block_similarity.png").read_bytes()[:4] == b"\x89PNG"
