"""The pieces fit: the demo corpus, packed with the teacher's tokenizer and masked, goes through the
demo supernet (student) and the MiniLM teacher, and every tensor distillation pairs up has matching
shapes. A few optimisation steps of a plain MLM + hidden-state objective lower the loss.

Uses the real demo data and teacher from the default cache (fetched from the registry on first use).
"""

import os
import random

import pytest
import torch
from torch.utils.data import DataLoader

from elasticlm.data.cache import cache_root
from elasticlm.data.corpus import MLMCollator, packed_blocks
from elasticlm.distill.teachers import check_vocab, load_teacher
from elasticlm.models import Capture, SuperNet, SupernetConfig
from elasticlm.space import get_preset


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
    loader = DataLoader(blocks.train, batch_size=4, shuffle=False,
                        collate_fn=MLMCollator(teacher.tokenizer, seed=0))
    batch = next(iter(loader))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (4, 128) and (batch["labels"] != -100).any()

    torch.manual_seed(0)
    student = SuperNet(SupernetConfig(space)).train()
    arch = space.sample(random.Random(0), student.widths())
    head = student.extract(arch, head="mlm").lm_head  # a fresh MLM head for the path
    project = torch.nn.Linear(space.hidden_size, teacher.hidden_size)  # the hidden-loss projection
    params = student.path_parameters(arch) + list(head.parameters()) + list(project.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    t_out = teacher(ids, mask, batch.get("token_type_ids"))
    losses = []
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s_out = student(ids, arch, mask, capture=Capture(attn_probs=True, block_output=True))
            logits = head(s_out.last_hidden_state)
        assert logits.shape == (4, 128, teacher.vocab_size)
        mlm = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.shape[-1]), batch["labels"].view(-1))
        hidden = 0.0
        for l in range(1, space.num_layers + 1):
            t_layer = teacher.layer_for_student(l, space.num_layers)
            t_h, s_h = t_out.hidden_states[t_layer], project(s_out.hidden_states[l].float())
            assert t_h.shape == s_h.shape == (4, 128, teacher.hidden_size)
            assert t_out.attentions[t_layer - 1].shape[-2:] == s_out.attentions[l - 1].shape[-2:] == (128, 128)
            hidden = hidden + (1 - torch.nn.functional.cosine_similarity(
                t_h - t_h.mean(-1, keepdim=True), s_h - s_h.mean(-1, keepdim=True), dim=-1)).mean()
        loss = mlm + hidden / space.num_layers
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    # only the sampled path was trained
    untouched = student.block(0, *next(c for c in space.candidates if c != arch[0].candidate))
    assert all(p.grad is None for p in untouched.parameters())
