"""scripts/teacher_ceiling.py: a teacher cut to its layers, and a student sliced from them."""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from elasticlm.space import SearchSpace

spec = importlib.util.spec_from_file_location("teacher_ceiling", Path(__file__).parents[1] / "scripts" / "teacher_ceiling.py")
ceiling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ceiling)


def tiny_teacher(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, num_labels=2,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg).eval()


def batch(n=48, length=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 120, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[: n // 2, length // 2:] = 0
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_cut_teacher_keeps_the_layers_asked_and_cuts_the_embedding_rank():
    t, b = tiny_teacher(), batch()
    whole = ceiling.cut_teacher(t, [0, 1, 2]).eval()
    torch.testing.assert_close(whole(**b).logits, t(**b).logits)
    cut = ceiling.cut_teacher(t, [2, 0], rank=5)
    assert [id(l) for l in cut.bert.encoder.layer] != [id(l) for l in t.bert.encoder.layer]
    torch.testing.assert_close(cut.bert.encoder.layer[0].output.dense.weight, t.bert.encoder.layer[2].output.dense.weight)
    w = cut.bert.embeddings.word_embeddings.weight
    assert torch.linalg.matrix_rank(w - w.mean(0)) == 5
    assert all(p.requires_grad for p in cut.parameters())


def test_slicing_that_drops_nothing_keeps_the_teacher_layers():
    """At the teacher's own width (every dimension, head and unit kept) the sliced student's blocks
    compute the teacher's: each layer keeps what reaches it, up to the factorised embedding's fit."""
    t, b = tiny_teacher(), batch()
    space = SearchSpace(hidden_size=32, num_layers=3, num_heads=4, embedding_size=32, vocab_size=120,
                        max_position_embeddings=64)
    student = ceiling.sliced_student(space, t, [0, 1, 2], seed=0, pooling="cls")
    r2 = ceiling.slice_teacher(student, t, [0, 1, 2], b)
    assert len(r2) == 4 and r2[0] > 0.9
    assert min(r2) > 0.95, r2
    narrow = SearchSpace(hidden_size=16, num_layers=3, num_heads=4, embedding_size=8, vocab_size=120,
                         max_position_embeddings=64)
    s2 = ceiling.sliced_student(narrow, t, [0, 2], seed=0, pooling="cls")
    lossy = ceiling.slice_teacher(s2, t, [0, 2], b)
    assert min(lossy) < min(r2)  # half the width keeps less


def test_slicing_needs_the_teachers_head_width():
    t, b = tiny_teacher(), batch()
    space = SearchSpace(hidden_size=32, num_layers=3, num_heads=4, embedding_size=32, vocab_size=120,
                        max_position_embeddings=64)
    student = ceiling.sliced_student(space, t, [0], seed=0, pooling="cls")
    student.elasticlm.layers[0].heads = 2
    with pytest.raises(ValueError, match="8-wide heads"):
        ceiling.slice_teacher(student, t, [0], b)


def test_paired_difference_reads_every_seed_below_each_folder(tmp_path):
    import numpy as np

    labels = np.array([0, 1] * 50)
    right = np.eye(2)[labels] * 3.0  # logits that pick the label
    wrong = right[:, ::-1]
    for folder, seeds in (("a", [right, right]), ("b", [np.where(np.arange(100)[:, None] < 20, wrong, right)])):
        for k, logits in enumerate(seeds):
            out = tmp_path / folder / f"seed-{k}"
            out.mkdir(parents=True)
            np.savez(out / "predictions.npz", dev=logits, dev_labels=labels, test=logits, test_labels=labels)
    line = ceiling.paired(tmp_path / "a", tmp_path / "b", "accuracy")
    assert line.startswith("dev +20.0 [") and "test +20.0 [" in line and "(2 vs 1 seeds)" in line
    with pytest.raises(SystemExit, match="no predictions.npz"):
        ceiling.paired(tmp_path / "a", tmp_path / "missing", "accuracy")
