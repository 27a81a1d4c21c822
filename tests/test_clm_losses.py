"""The sliced vocabulary loss equals the plain one on full logits (values and gradients, with and
without a teacher, fp32 and bf16 autocast), and the causal pretraining objective's hidden-state
distillation trains its projection, which stays out of the saved model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from elasticlm.clm.losses import head_loss


def plain(x, w, b, targets, t_logits=None, kd_weight=0.0):
    logits = F.linear(x, w, b).float()
    ce = F.cross_entropy(logits, targets)
    if t_logits is None:
        return ce, ce, torch.zeros(())
    kd = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t_logits.float(), -1), log_target=True,
                  reduction="none").sum(-1).mean()
    return (1 - kd_weight) * ce + kd_weight * kd, ce, kd


def leaves(seed: int, M=37, e=8, V=53):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, e, generator=g, requires_grad=True)
    w = torch.randn(V, e, generator=g, requires_grad=True)
    b = torch.randn(V, generator=g, requires_grad=True)
    return x, w, b, torch.randint(0, V, (M,), generator=g), torch.randn(M, V + 3, generator=g) * 2


@pytest.mark.parametrize("teacher", [False, True])
@pytest.mark.parametrize("bf16", [False, True])
def test_sliced_loss_equals_the_plain_one(teacher, bf16):
    x, w, b, targets, t_logits = leaves(0)
    ref = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    kd_weight = 0.3 if teacher else 0.0
    rows = (lambda s, e: t_logits[s:e]) if teacher else None  # noqa: E731
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        total, ce, kd = head_loss(x, w, b, targets, teacher=rows, kd_weight=kd_weight, rows=5)
        r_total, r_ce, r_kd = plain(*ref, targets, t_logits[:, :53] if teacher else None, kd_weight)
    tol = dict(atol=2e-2, rtol=2e-2) if bf16 else dict(atol=1e-5, rtol=1e-5)
    for a, r in ((total, r_total), (ce, r_ce), (kd, r_kd)):
        torch.testing.assert_close(a, r.float(), **tol)
    (3 * total).backward()
    (3 * r_total).backward()
    for a, r in zip((x, w, b), ref):
        assert a.grad.dtype == a.dtype
        torch.testing.assert_close(a.grad, r.grad, **tol)
    assert not ce.requires_grad and not kd.requires_grad


def test_sliced_loss_without_grad_and_on_no_rows():
    x, w, b, targets, _ = leaves(1)
    with torch.no_grad():
        total, ce, _ = head_loss(x, w, b, targets, rows=4)
    torch.testing.assert_close(total, plain(x, w, b, targets)[0].detach())
    empty, _, _ = head_loss(x[:0], w, b, targets[:0])
    empty.backward()
    assert float(empty.detach()) == 0.0 and w.grad is not None


def test_lm_head_loss_of_the_decoder_equals_its_logits_loss(tiny_space):
    """The objectives' path (body, head features, sliced loss) gives the model's own labels loss."""
    from elasticlm.clm.train import causal_lm_loss
    from elasticlm.models import ElasticLMConfig, ElasticLMForCausalLM

    cfg = ElasticLMConfig.from_space(tiny_space, tiny_space.uniform("mobile", "qv", 24, 2), hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ElasticLMForCausalLM(cfg)
    ids = torch.randint(5, tiny_space.vocab_size, (3, 12), generator=torch.Generator().manual_seed(2))
    loss = causal_lm_loss(model, ids)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref = model(input_ids=ids, labels=ids).loss
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, atol=1e-6, rtol=1e-5, msg=n)


def test_pretraining_distils_teacher_logits_and_hidden_states(tiny_space, tmp_path):
    from test_clm_checkpoint import tiny_decoder, tiny_llama_teacher

    from elasticlm.clm.train import CausalPretrain, teacher_states
    from elasticlm.train.engine import TrainConfig, fit

    teacher = tiny_llama_teacher(tiny_space.vocab_size)
    blocks = np.random.default_rng(0).integers(5, tiny_space.vocab_size, (16, 12)).astype(np.int32)
    cfg = TrainConfig(lr=3e-3, batch_size=4, max_steps=8, warmup_ratio=0.0, precision="fp32", progress=False,
                      log_every=1, device="cpu")
    model = tiny_decoder(tiny_space, 0)
    objective = CausalPretrain(model, blocks, cfg, teacher=teacher, kd_weight=0.4, hidden_weight=2.0)
    assert objective.lmap == [1, 1, 2, 2] and set(objective.modules) == {"student", "projection"}
    batch = objective.batch(0, 0)
    ids = batch["input_ids"]
    losses = objective.losses(batch, 0)

    # the kd part is the plain KL to the teacher's own logits over the positions that have a next token
    t_logits = teacher.model(input_ids=ids).logits[:, :-1]
    s_logits = model(input_ids=ids).logits[:, :-1]
    kd = F.kl_div(F.log_softmax(s_logits, -1), F.log_softmax(t_logits, -1), log_target=True,
                  reduction="none").sum(-1).mean()
    torch.testing.assert_close(losses["kd"], kd, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses["lm"], model(input_ids=ids, labels=ids).loss, atol=1e-5, rtol=1e-5)
    # the hidden part: mean over student layers of 1 - Pearson between projected student and teacher layer
    from elasticlm.distill.losses import pearson_distance

    s_h = model(input_ids=ids, output_hidden_states=True).hidden_states
    t_h, _ = teacher_states(teacher, ids)
    ref = sum(pearson_distance(objective.proj(l, s_h[l + 1]), t_h[objective.lmap[l]]).mean() for l in range(4)) / 4
    torch.testing.assert_close(losses["hidden"], ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(losses["loss"], 0.6 * losses["lm"] + 0.4 * kd + 2.0 * ref, atol=1e-5, rtol=1e-5)

    # a teacher whose logits are not its output embedding of its last state (a soft cap) is refused
    from elasticlm.errors import ElasticLMError

    capped = tiny_llama_teacher(tiny_space.vocab_size)
    real_forward = capped.model.forward
    capped.model.forward = lambda *a, **k: _scaled(real_forward(*a, **k))
    with pytest.raises(ElasticLMError, match="kd_weight=0"):
        CausalPretrain(tiny_decoder(tiny_space, 0), blocks, cfg, teacher=capped, kd_weight=0.4).losses(batch, 0)

    before = [p.detach().clone() for p in objective.proj.parameters()]
    state = fit(objective, cfg, tmp_path / "run", total=8, say=lambda s: None)
    assert state["losses"]["hidden"] < float(losses["hidden"].detach())  # the projection and student learn the teacher's states
    assert any(not torch.equal(a, b) for a, b in zip(before, objective.proj.parameters()))
    model.save_pretrained(tmp_path / "model")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model" / "model.safetensors"), "pt") as f:  # no Linear(d, d_t) in the model
        assert all(tuple(f.get_slice(k).get_shape()) != (teacher.hidden_size, tiny_space.hidden_size) for k in f.keys())
    with safe_open(str(tmp_path / "run" / "checkpoints" / "step-8" / "projection.safetensors"), "pt") as f:
        assert len(list(f.keys())) == 8  # 4 layers × (weight, bias)


def _scaled(out):
    out.logits = 30 * torch.tanh(out.logits / 30) * 0.5  # what a logit soft cap and scale would do
    return out
