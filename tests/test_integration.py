"""The pieces fit: the demo corpus, packed with the teacher's tokenizer and masked, goes through the
demo supernet (student) and the MiniLM teacher, and every tensor distillation pairs up has matching
shapes. A few optimisation steps of the library's own stage-1 objective (`MLMDistill`: MLM +
attention + hidden-state distillation through its `Distiller`) along one path lower the loss.

Uses the real demo data and teacher from the default cache (fetched from the registry on first use).
"""

import os
import random

import pytest
import torch

from elasticlm.data.cache import cache_root
from elasticlm.data.corpus import MLMCollator, packed_blocks
from elasticlm.distill.losses import DistillConfig, HiddenProjection
from elasticlm.distill.teachers import check_vocab, load_teacher
from elasticlm.space import get_preset
from elasticlm.train.engine import Dist, TrainConfig
from elasticlm.train.objectives import MLMDistill
from elasticlm.train.supernet import PretrainConfig, build_supernet


@pytest.fixture(scope="module")
def teacher():
    if os.environ.get("ELASTICLM_OFFLINE") and not (cache_root() / "packages").exists():
        pytest.skip("demo data is not cached and ELASTICLM_OFFLINE is set")
    return load_teacher("all-minilm-l6-v2")


def test_demo_student_and_teacher_pair_up(teacher):
    space = get_preset("demo").space
    check_vocab(teacher, space.vocab_size)
    blocks = packed_blocks("demo", teacher.tokenizer, 128, tokenizer_id="all-minilm-l6-v2")
    assert len(blocks.train) > 10_000

    cfg = PretrainConfig(train=TrainConfig(batch_size=4, precision="fp32", seed=0),
                         distill=DistillConfig(alpha_logit=0.0))  # MLM + attention + hidden
    student = build_supernet(space, fixed=False, seed=0).train()
    arch = space.sample(random.Random(0), student.widths())
    proj = HiddenProjection(space.num_layers, space.hidden_size, teacher.hidden_size,
                            generator=torch.Generator().manual_seed(2))
    collator = lambda g: MLMCollator(teacher.tokenizer, cfg.mlm_probability, generator=g)  # noqa: E731
    objective = MLMDistill(student, proj, teacher, blocks.train, collator, cfg, Dist(), arch=arch)
    batch = objective.batch(0, 0)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (4, 128) and (batch["labels"] != -100).any()

    # every pair the distillation compares has matching shapes
    kd = objective.distiller
    s_out = student(ids, arch, mask, capture=kd.capture())
    t_out = kd.teacher(teacher, ids, mask, batch["token_type_ids"])
    for l in range(space.num_layers):
        t_layer = objective.lmap[l]
        assert proj(l, s_out.hidden_states[l + 1]).shape == t_out.hidden_states[t_layer].shape == (
            4, 128, teacher.hidden_size)
        assert t_out.attentions[t_layer - 1].shape[-2:] == s_out.attentions[l].shape[-2:] == (128, 128)

    opt = torch.optim.AdamW(student.path_parameters(arch) + list(student.mlm_head.parameters())
                            + list(proj.parameters()), lr=1e-3)
    losses = []
    for step in range(8):
        out = objective.losses(batch, step)
        assert set(out) == {"loss", "mlm", "attn", "hidden"}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0]
    # only the sampled path was trained
    untouched = student.block(0, *next(c for c in space.candidates if c != arch[0].candidate))
    assert all(p.grad is None for p in untouched.parameters())
