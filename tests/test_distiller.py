"""The supernet objectives' `Distiller`: the classic attention weight calibrated once on the first batch
(and kept across a resume), and hidden projections per candidate block (only the sampled path's get
gradients) or per layer (the former behaviour)."""

import random

import pytest
import torch

from elasticlm.distill.losses import (DistillConfig, HiddenProjection, attention_losses, hidden_loss,
                                      supernet_projection)
from elasticlm.models import Capture
from elasticlm.train.objectives import Distiller
from elasticlm.train.supernet import build_supernet, resolve_space

SPACE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "embedding_size": 16, "vocab_size": 40,
         "max_position_embeddings": 16, "param_ceiling": None}
LMAP = [1, 2]


@pytest.fixture(scope="module")
def nets():
    space = resolve_space("demo", SPACE)
    return space, build_supernet(space, fixed=False, seed=0), build_supernet(space, fixed=False, seed=1)


def forward(nets, seed: int, *, grad: bool = False):
    """(student output, teacher-like output, mask, arch): two random supernets on one random batch."""
    space, student, teacher = nets
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40, (3, 12), generator=g)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 8:] = 0
    capture = Capture(attn_probs=True, block_output=True)
    arch = space.sample(random.Random(seed), student.widths())
    with torch.set_grad_enabled(grad):
        out = student(ids, arch, attention_mask=mask, capture=capture)
    with torch.no_grad():
        t_out = teacher(ids, space.sample(random.Random(seed + 100), teacher.widths()), attention_mask=mask,
                        capture=capture)
    return out, t_out, mask, arch


def test_classic_attention_weight_is_calibrated_once_and_survives_a_resume(nets):
    out, t_out, mask, arch = forward(nets, 0)
    cfg = DistillConfig(kind="classic", alpha_hidden=0.0)
    kd = Distiller(cfg, None, LMAP)
    assert kd.attn_scale is None and kd.state() == {}
    first = kd.representation(out, t_out, mask, arch)["attn"].item()
    relational = attention_losses(out.attentions, t_out.attentions, LMAP, mask).item()
    raw = attention_losses(out.attentions, t_out.attentions, LMAP, mask, kind="classic").item()
    assert raw < relational / 20  # uncalibrated: practically no attention term
    assert 0.5 < first / relational < 2.0 and first == pytest.approx(relational, rel=1e-4)
    scale = kd.attn_scale
    out2, t_out2, mask2, arch2 = forward(nets, 1)
    second = kd.representation(out2, t_out2, mask2, arch2)["attn"].item()
    raw2 = attention_losses(out2.attentions, t_out2.attentions, LMAP, mask2, kind="classic").item()
    assert kd.attn_scale == scale and second == pytest.approx(scale * raw2, rel=1e-5)  # not recalibrated
    resumed = Distiller(cfg, None, LMAP)
    resumed.restore({"step": 10, **kd.state()})
    assert resumed.representation(out2, t_out2, mask2, arch2)["attn"].item() == pytest.approx(second, rel=1e-6)
    fixed = Distiller(DistillConfig(kind="classic", alpha_hidden=0.0, classic_attn_scale=2.0), None, LMAP)
    fixed.restore(kd.state())  # a weight set in the config is never replaced
    assert fixed.representation(out, t_out, mask, arch)["attn"].item() == pytest.approx(2.0 * raw, rel=1e-5)
    rel_kd = Distiller(DistillConfig(alpha_hidden=0.0), None, LMAP)
    assert rel_kd.representation(out, t_out, mask, arch)["attn"].item() == pytest.approx(relational, rel=1e-6)
    assert rel_kd.attn_scale is None  # relational: nothing calibrated


def test_per_block_projections_only_the_sampled_paths_get_gradients(nets):
    space = nets[0]
    out, t_out, mask, arch = forward(nets, 2, grad=True)
    proj = supernet_projection(space, 32, "block", generator=torch.Generator().manual_seed(2))
    assert len(proj.layers) == space.num_layers * len(space.candidates) == 12
    kd = Distiller(DistillConfig(), proj, LMAP)
    kd.representation(out, t_out, mask, arch)["hidden"].backward()
    for l, choice in enumerate(arch.layers):
        for cand in space.candidates:
            grad = proj.layers[proj.index(l, cand)].weight.grad
            assert (grad is not None) == (cand == (choice.kind, choice.sharing)), (l, cand)
    assert proj.layers[proj.index(0, (arch.layers[0].kind, arch.layers[0].sharing))].weight.grad.abs().sum() > 0


def test_per_layer_projection_reproduces_the_shared_projection(nets):
    space = nets[0]
    out, t_out, mask, arch = forward(nets, 3)
    proj = supernet_projection(space, 32, "layer", generator=torch.Generator().manual_seed(2))
    old = HiddenProjection(2, 32, 32, generator=torch.Generator().manual_seed(2))  # the former one-per-layer
    assert len(proj.layers) == 2
    got = Distiller(DistillConfig(projection="layer"), proj, LMAP).representation(out, t_out, mask, arch)["hidden"]
    ref = sum(hidden_loss(old(l, out.hidden_states[l + 1]), t_out.hidden_states[LMAP[l]], mask) for l in range(2)) / 2
    torch.testing.assert_close(got, ref)
