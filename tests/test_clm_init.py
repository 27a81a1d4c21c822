"""The decoder's token embedding started from the teacher's principal components."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from elasticlm.distill.init import embedding_from_teacher
from elasticlm.errors import ElasticLMError


class Teacher(torch.nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.emb = torch.nn.Embedding.from_pretrained(weight)

    def get_input_embeddings(self):
        return self.emb


def student(tiny_space, tiny_tokenizer, vocab: int):
    from elasticlm.clm.pipeline import new_student

    tok = tiny_tokenizer(["a", "b"])
    space = replace(tiny_space, vocab_size=vocab)
    return new_student(space, space.uniform("bert", "none", 24, 2), tok, seed=0)


def test_rank_e_teacher_embedding_is_kept_whole(tiny_space, tiny_tokenizer):
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    model = student(tiny_space, tiny_tokenizer, 97)
    e = model.get_input_embeddings().weight.shape[1]  # 16
    g = torch.Generator().manual_seed(0)
    low = torch.randn(97, e, generator=g) @ torch.randn(e, 40, generator=g) + 3.0  # rank e, off-centre
    torch.random.set_rng_state(before)
    share = embedding_from_teacher(model, Teacher(low), std=0.05)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global generator is not touched
    assert share == pytest.approx(1.0, abs=1e-5)
    w = model.get_input_embeddings().weight.detach().double()
    assert w.std().item() == pytest.approx(0.05, rel=1e-3)
    centred = (low - low.mean(0)).double()
    # the same row geometry: the student's rows are a linear map of the teacher's centred rows, and back
    x = torch.linalg.lstsq(w, centred).solution
    assert torch.allclose(w @ x, centred, atol=1e-6 * centred.abs().max())
    # the tie to the LM head holds
    assert model.lm_head.decoder.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_top_components_first(tiny_space, tiny_tokenizer):
    model = student(tiny_space, tiny_tokenizer, 97)
    g = torch.Generator().manual_seed(0)
    full = torch.randn(97, 40, generator=g) * torch.linspace(3, 0.1, 40)  # decaying variances
    share = embedding_from_teacher(model, Teacher(full))
    sv = torch.linalg.svdvals(full - full.mean(0)) ** 2  # exact PCA: the most variance 16 directions hold
    assert share == pytest.approx(float(sv[:16].sum() / sv.sum()), rel=0.02) and share < 1


def test_mismatched_vocabulary_is_a_user_error(tiny_space, tiny_tokenizer):
    model = student(tiny_space, tiny_tokenizer, 97)
    with pytest.raises(ElasticLMError, match="tokenizer"):
        embedding_from_teacher(model, Teacher(torch.randn(50, 40)))
    embedding_from_teacher(model, Teacher(torch.randn(128, 40)))  # rows past the tokenizer's ids (padding) are fine
    assert embedding_from_teacher(model, Teacher(torch.randn(97, 8))) == pytest.approx(1.0)  # narrower teacher: all kept
    assert model.get_input_embeddings().weight[:, 8:].abs().sum() == 0
    with pytest.raises(ElasticLMError, match="std"):
        embedding_from_teacher(model, Teacher(torch.randn(97, 40)), std=0.0)
