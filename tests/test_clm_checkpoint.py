"""Checkpoints of models with tied weights (the causal decoder's LM head is its token embedding):
saved once with an alias record, loaded strictly with the tie intact, and a causal pretraining run
killed mid-way resumes to the same weights as an uninterrupted one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from elasticlm.train.run_folder import find_checkpoint, load_checkpoint_weights, save_checkpoint


def tiny_decoder(space, seed: int):
    from elasticlm.models import ElasticLMConfig, ElasticLMForCausalLM

    cfg = ElasticLMConfig.from_space(space, space.uniform("bert", "kv", 24, 4), hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ElasticLMForCausalLM(cfg)


def tied(model) -> bool:
    return model.lm_head.decoder.weight is model.elasticlm.embeddings.word_embeddings.weight


class Killed(Exception):
    pass


class KilledAt:
    """An objective that dies (like a killed process) when asked for step `at`'s batch."""

    def __init__(self, objective, at: int):
        self.objective, self.at, self.modules = objective, at, objective.modules

    def batch(self, step, micro):
        if step == self.at:
            raise Killed(f"killed at step {step}")
        return self.objective.batch(step, micro)

    def losses(self, batch, step):
        return self.objective.losses(batch, step)


def test_tied_weights_are_saved_once_and_stay_tied(tmp_path, tiny_space):
    from safetensors import safe_open

    model = tiny_decoder(tiny_space, 0)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    folder = save_checkpoint(tmp_path, 3, {"student": model}, opt, sched, {})
    with safe_open(str(folder / "student.safetensors"), "pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert "elasticlm.embeddings.word_embeddings.weight" in keys and "lm_head.decoder.weight" not in keys
    assert json.loads(meta["aliases"]) == {"lm_head.decoder.weight": "elasticlm.embeddings.word_embeddings.weight"}
    other = tiny_decoder(tiny_space, 1)
    load_checkpoint_weights(find_checkpoint(tmp_path, ["student"]), {"student": other})
    assert tied(other)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        torch.testing.assert_close(b, a, atol=0, rtol=0, msg=k)


def test_views_into_one_storage_are_saved_as_copies(tmp_path):
    """Two parameters that are different slices of one buffer: each saved whole, loaded back."""

    class Halves(nn.Module):
        def __init__(self):
            super().__init__()
            flat = torch.arange(8.0)
            self.a, self.b = nn.Parameter(flat[:4].view(2, 2)), nn.Parameter(flat[4:].view(2, 2))

    m, other = Halves(), Halves()
    with torch.no_grad():
        other.a.zero_(), other.b.zero_()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    save_checkpoint(tmp_path, 1, {"m": m}, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), {})
    load_checkpoint_weights(find_checkpoint(tmp_path, ["m"]), {"m": other})
    torch.testing.assert_close(other.a, m.a)
    torch.testing.assert_close(other.b, m.b)


def test_checkpoint_without_alias_record_still_loads(tmp_path, tiny_space):
    """A file that simply lacks the tied name (as the older wrapper wrote them) fills it from the tie."""
    from safetensors.torch import save_file

    model = tiny_decoder(tiny_space, 0)
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.decoder.weight"}
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "student.safetensors"))
    (tmp_path / "state.json").write_text('{"step": 1}')
    other = tiny_decoder(tiny_space, 1)
    load_checkpoint_weights(tmp_path, {"student": other})
    assert tied(other)
    torch.testing.assert_close(other.lm_head.decoder.weight, model.lm_head.decoder.weight)


@pytest.mark.parametrize("kd", [False, True])
def test_killed_causal_pretrain_resumes_to_the_same_weights(tmp_path, tiny_space, kd):
    """6 steps straight vs killed during step 5 (checkpoint at 3) and resumed: weights within 1e-6,
    the LM head still the embedding; with hidden-state distillation the projection resumes too."""
    from elasticlm.clm.train import CausalPretrain
    from elasticlm.train.engine import TrainConfig, fit

    teacher = tiny_llama_teacher(tiny_space.vocab_size) if kd else None
    blocks = np.random.default_rng(0).integers(5, tiny_space.vocab_size, (24, 16)).astype(np.int32)
    cfg = TrainConfig(lr=3e-3, batch_size=4, max_steps=6, warmup_ratio=0.0, precision="fp32", progress=False,
                      checkpoint_every=3, log_every=1, device="cpu")
    kw = dict(teacher=teacher, kd_weight=0.5, hidden_weight=1.0) if kd else {}

    straight = tiny_decoder(tiny_space, 0)
    fit(CausalPretrain(straight, blocks, cfg, **kw), cfg, tmp_path / "a", total=6, say=lambda s: None)

    with pytest.raises(Killed):
        fit(KilledAt(CausalPretrain(tiny_decoder(tiny_space, 0), blocks, cfg, **kw), 4), cfg, tmp_path / "b",
            total=6, say=lambda s: None)
    resumed = tiny_decoder(tiny_space, 7)  # other initial weights: everything must come from the checkpoint
    said = []
    objective = CausalPretrain(resumed, blocks, cfg, **kw)
    fit(objective, cfg, tmp_path / "b", total=6, say=said.append)
    assert any("resuming from" in s and "step-3" in s for s in said)
    assert tied(resumed) and tied(straight)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0, msg=k)
    assert ("projection" in objective.modules) == kd


def tiny_llama_teacher(vocab: int):
    """A random 2-layer Llama-like causal teacher (d_t=32) behind the `Teacher` interface."""
    from pathlib import Path

    from transformers import LlamaConfig, LlamaForCausalLM

    from elasticlm.distill.teachers import Teacher

    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                          pad_token_id=0, bos_token_id=None, eos_token_id=None)
        model = LlamaForCausalLM(cfg)
    return Teacher(model, None, kind="causal", path=Path("."), has_lm_head=True, task_kind=None,
                   dtype=torch.float32)
