"""Supernet, blocks, growth, extraction and the HuggingFace classes (fp32, tiny sizes)."""

import random

import pytest
import torch
from conftest import LastHidden
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertConfig,
)
from transformers.models.bert.modeling_bert import BertLayer

from elasticlm.models import Capture, ElasticLMConfig, SuperNet, SupernetConfig, carry_optimizer_state
from elasticlm.models.blocks import Attention, BertBlock
from elasticlm.space import Architecture, LayerChoice, SearchSpace

torch.set_num_threads(2)

ALL_HEADS = ("base", "mlm", "classification", "qa", "causal")


def perturb_norms(module, gen):
    """Non-trivial LayerNorm affine parameters, so a test cannot pass by symmetry."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.2, generator=gen)
                m.bias.normal_(0.0, 0.2, generator=gen)


@pytest.fixture(scope="module")
def supernet(tiny_space):
    """The tiny space's supernet (conftest.py: d=48, 4 layers, H=12, FFN grid 12..96)."""
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(tiny_space))
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    for (l, kind, sharing), block in net.blocks():  # random grown widths, as after some training
        net.grow_ffn(l, kind, sharing, rng.choice(tiny_space.ffn_grid), generator=gen)
        with torch.no_grad():
            for ffn in block.ffns():
                ffn.fc_out.weight.normal_(0, 0.05, generator=gen)
    perturb_norms(net, gen)
    return net.eval()


def random_arch(net: SuperNet, rng: random.Random) -> Architecture:
    """A path through the supernet: any candidate, FFN width <= the block's, any valid head count."""
    space, layers = net.space, []
    for l in range(space.num_layers):
        kind, sharing = rng.choice(space.candidates)
        width = net.block(l, kind, sharing).ffn_dim
        ffn = rng.choice([f for f in space.ffn_grid if f <= width])
        layers.append(LayerChoice(kind, sharing, ffn, rng.choice(space.valid_heads(kind))))
    return Architecture(tuple(layers))


def batch(space: SearchSpace, b=3, n=20, seed=0):
    """ids, attention mask (rows 1 and 2 padded), token types (second half 1), all b×n."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, space.vocab_size, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1 % b, n - 5:] = 0
    mask[2 % b, n - 9:] = 0
    types = torch.zeros(b, n, dtype=torch.long)
    types[:, n // 2:] = 1
    return ids, mask, types


def head_from_hidden(model, head, h, mask=None):
    """Apply the task head of an extracted model to supernet hidden states."""
    if head == "base":
        return h
    if head in ("mlm", "causal"):
        return model.lm_head(h)
    if head == "classification":
        from elasticlm.models.modeling import pool

        return model.classifier(torch.tanh(model.pooler(pool(h, mask, model.config.classifier_pooling))))
    return model.qa_outputs(h)


def head_output(model, head, ids, mask, types):
    out = model(ids, attention_mask=mask, token_type_ids=types)
    if head == "base":
        return out.last_hidden_state
    if head == "qa":
        return torch.stack([out.start_logits, out.end_logits], -1)
    return out.logits


def test_extracted_subnet_matches_supernet(supernet, tiny_space):
    rng = random.Random(1)
    ids, mask, types = batch(tiny_space)
    seen_candidates, seen_heads = set(), set()
    for trial in range(30):
        arch = random_arch(supernet, rng)
        head = ALL_HEADS[trial % len(ALL_HEADS)]
        causal = head == "causal"
        with torch.no_grad():
            ref = supernet(ids, arch, mask, types, causal=causal).last_hidden_state
            model = supernet.extract(arch, head=head, num_labels=3).eval()
            got = head_output(model, head, ids, mask, types)
            want = head_from_hidden(model, head, ref, mask)
        assert (got - want).abs().max().item() <= 1e-5, (head, arch.short())
        seen_candidates |= {l.candidate for l in arch}
        seen_heads.add(head)
    assert seen_candidates == set(tiny_space.candidates) and seen_heads == set(ALL_HEADS)


def test_extracted_subnet_captures_match(supernet, tiny_space):
    rng = random.Random(2)
    ids, mask, types = batch(tiny_space)
    everything = Capture(attn_probs=True, head_context=True, ffn_hidden=True, block_output=True)
    for _ in range(6):
        arch = random_arch(supernet, rng)
        with torch.no_grad():
            a = supernet(ids, arch, mask, types, capture=everything)
            b = supernet.extract(arch).eval().encode(ids, mask, types, capture=everything)
        for field in ("hidden_states", "attentions", "head_contexts", "ffn_hiddens"):
            xs, ys = getattr(a, field), getattr(b, field)
            assert len(xs) == len(ys) == (tiny_space.num_layers + (field == "hidden_states"))
            for x, y in zip(xs, ys):
                assert x.shape == y.shape and (x - y).abs().max() <= 1e-5, field
        for l, choice in enumerate(arch):
            assert a.attentions[l].shape == (3, choice.heads, 20, 20)
            width = tiny_space.attention_width(choice.kind)
            assert a.head_contexts[l].shape == (3, choice.heads, 20, width // choice.heads)
            want = (3, 20, choice.ffn_dim) if choice.kind == "bert" else (tiny_space.mobile_ffns, 3, 20, choice.ffn_dim)
            assert a.ffn_hiddens[l].shape == want
            rows = a.attentions[l].sum(-1)
            assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
            assert a.attentions[l][1, :, :, -5:].abs().max() == 0  # padded keys get no attention


def test_capture_costs_nothing_when_off(supernet, tiny_space):
    arch = random_arch(supernet, random.Random(3))
    out = supernet(*batch(tiny_space)[:1], arch)
    assert out.hidden_states is None and out.attentions is None and out.ffn_hiddens is None


def test_eager_and_sdpa_agree(supernet, tiny_space):
    ids, mask, types = batch(tiny_space)
    arch = random_arch(supernet, random.Random(4))
    model = supernet.extract(arch).eval()
    with torch.no_grad():
        sdpa = model.encode(ids, mask, types).last_hidden_state
        eager = model.encode(ids, mask, types, capture=Capture(attn_probs=True)).last_hidden_state
    assert (sdpa - eager).abs().max() <= 1e-5


def test_analytic_param_count_equals_numel(tiny_space):
    rng = random.Random(5)
    for space in (tiny_space, SearchSpace(hidden_size=192, num_layers=6)):
        for _ in range(12):
            arch = space.sample(rng)
            model = ElasticLMConfig.from_space(space, arch)
            from elasticlm.models import ElasticLMModel
            m = ElasticLMModel(model)
            count = space.count_params(arch)
            assert count.total == sum(p.numel() for p in m.parameters())
            assert count.non_embedding == sum(p.numel() for p in m.layers.parameters())
            for l, block in enumerate(m.layers):
                assert count.per_layer[l] == sum(p.numel() for p in block.parameters())


def test_sharing_really_shares_one_tensor():
    d = 48
    dims = dict(hidden_size=d, ffn_dim=24, heads=4)
    keys = {s: set(BertBlock(sharing=s, **dims).state_dict()) for s in ("none", "qv", "kv")}
    assert {k for k in keys["none"] if "attention.value" in k} == {"attention.value.weight", "attention.value.bias"}
    for s in ("qv", "kv"):
        assert keys["none"] - keys[s] == {"attention.value.weight", "attention.value.bias"}
        n_none = sum(p.numel() for p in BertBlock(sharing="none", **dims).parameters())
        n_s = sum(p.numel() for p in BertBlock(sharing=s, **dims).parameters())
        assert n_none - n_s == d * d + d
    # the shared projection really is used as V: compare with a hand-written attention
    torch.manual_seed(0)
    x = torch.randn(2, 7, d)
    for sharing in ("qv", "kv"):
        attn = Attention(d, sharing).eval()
        q = attn.query(x).view(2, 7, 4, 12).transpose(1, 2)
        k = attn.key(x).view(2, 7, 4, 12).transpose(1, 2)
        v = q if sharing == "qv" else k
        probs = torch.softmax(q @ k.transpose(-1, -2) / 12**0.5, -1)
        want = attn.out((probs @ v).transpose(1, 2).reshape(2, 7, d))
        got = attn(x, None, 4, eager=False)
        assert (got - want).abs().max() <= 1e-5


def test_bert_block_matches_transformers_bert_layer():
    """Our bert block (no sharing) computes exactly what HF's BertLayer computes."""
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=48, num_attention_heads=4, intermediate_size=96, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, attn_implementation="eager")
    ref = BertLayer(cfg).eval()
    ours = BertBlock(48, 96, 4).eval()
    perturb_norms(ref, torch.Generator().manual_seed(1))
    a, s = ref.attention, ref.attention.self
    mapping = {
        "attention.query": s.query, "attention.key": s.key, "attention.value": s.value,
        "attention.out": a.output.dense, "attn_norm": a.output.LayerNorm,
        "ffn.fc_in": ref.intermediate.dense, "ffn.fc_out": ref.output.dense, "ffn_norm": ref.output.LayerNorm,
    }
    ours.load_state_dict({f"{k}.{p}": getattr(m, p) for k, m in mapping.items() for p in ("weight", "bias")})
    x = torch.randn(2, 9, 48)
    mask = torch.zeros(2, 1, 1, 9)
    mask[1, ..., 6:] = torch.finfo(torch.float32).min
    with torch.no_grad():
        want = ref(x, attention_mask=mask)
        want = want[0] if isinstance(want, tuple) else want  # transformers 5 returns the tensor
        got, _ = ours(x, mask)
    assert (got - want).abs().max() <= 1e-5


def test_ffn_growth_preserves_every_block_output(tiny_space):
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(tiny_space)).eval()
    perturb_norms(net, torch.Generator().manual_seed(2))
    x = torch.randn(2, 11, tiny_space.hidden_size)
    mask = torch.zeros(2, 1, 1, 11)
    before = {key: block(x, mask)[0] for key, block in net.blocks()}
    gen = torch.Generator().manual_seed(3)
    for (l, kind, sharing), block in net.blocks():
        net.grow_ffn(l, kind, sharing, block.ffn_dim + 2 * tiny_space.ffn_step, generator=gen)
        assert block.ffn_dim == 3 * tiny_space.ffn_step
        assert all(f.hidden == block.ffn_dim for f in block.ffns())  # mobile FFNs grow together
    with torch.no_grad():
        for key, block in net.blocks():
            assert (block(x, mask)[0] - before[key]).abs().max() <= 1e-6, key
    with pytest.raises(ValueError, match="cannot grow FFN"):
        net.grow_ffn(0, "bert", "none", 5)


def test_grown_blocks_still_train_and_keep_optimizer_state(tiny_space):
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(tiny_space)).train()
    arch = Architecture(tuple(LayerChoice(k, s, tiny_space.ffn_step, 12) for k, s in
                              (("bert", "none"), ("mobile", "qv"), ("bert", "kv"), ("mobile", "none"))))
    ids, mask, types = batch(tiny_space)
    target = torch.randn(3, 20, tiny_space.hidden_size)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)

    def step(a):
        opt.zero_grad()
        loss = (net(ids, a, mask, types).last_hidden_state - target).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.item()

    step(arch)
    block = net.block(0, "bert", "none")
    old_w_out = block.ffn.fc_out.weight
    old_avg = opt.state[old_w_out]["exp_avg"].clone()
    replaced = net.grow_ffn(0, "bert", "none", 3 * tiny_space.ffn_step, generator=torch.Generator().manual_seed(0))
    replaced += net.grow_ffn(1, "mobile", "qv", 2 * tiny_space.ffn_step)
    carry_optimizer_state(opt, replaced)
    new_w_out = block.ffn.fc_out.weight
    state = opt.state[new_w_out]
    assert old_w_out not in opt.state
    assert torch.equal(state["exp_avg"][:, :tiny_space.ffn_step], old_avg)
    assert state["exp_avg"][:, tiny_space.ffn_step:].abs().max() == 0
    assert any(p is new_w_out for g in opt.param_groups for p in g["params"])
    grown = Architecture((LayerChoice("bert", "none", 3 * tiny_space.ffn_step, 12),
                          LayerChoice("mobile", "qv", 2 * tiny_space.ffn_step, 12)) + arch.layers[2:])
    losses = [step(grown) for _ in range(15)]
    assert losses[-1] < losses[0]
    assert block.ffn.fc_out.weight[:, tiny_space.ffn_step:].abs().max() > 0  # the new units learned


def test_padding_does_not_change_real_tokens(supernet, tiny_space):
    rng = random.Random(6)
    ids, _, types = batch(tiny_space, b=2, n=12)
    types[:, 6:] = 1
    for head in ALL_HEADS:
        arch = random_arch(supernet, rng)
        model = supernet.extract(arch, head=head, num_labels=2).eval()
        pad_ids = torch.cat([ids, torch.zeros(2, 7, dtype=torch.long)], 1)
        pad_types = torch.cat([types, torch.ones(2, 7, dtype=torch.long)], 1)
        pad_mask = torch.cat([torch.ones(2, 12), torch.zeros(2, 7)], 1).long()
        with torch.no_grad():
            short = head_output(model, head, ids, torch.ones(2, 12, dtype=torch.long), types)
            long = head_output(model, head, pad_ids, pad_mask, pad_types)
        long = long if head == "classification" else long[:, :12]
        assert (short - long).abs().max() <= 1e-5, head


def test_causal_model_does_not_look_ahead(supernet, tiny_space):
    arch = random_arch(supernet, random.Random(7))
    model = supernet.extract(arch, head="causal").eval()
    ids = batch(tiny_space, b=1, n=10)[0]
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 5) % tiny_space.vocab_size
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    assert (a[:, :6] - b[:, :6]).abs().max() <= 1e-5
    assert (a[:, 6:] - b[:, 6:]).abs().max() > 1e-3


AUTO = {"base": AutoModel, "mlm": AutoModelForMaskedLM, "classification": AutoModelForSequenceClassification,
        "qa": AutoModelForQuestionAnswering, "causal": AutoModelForCausalLM}


@pytest.mark.parametrize("head", ALL_HEADS)
def test_save_pretrained_round_trip(supernet, tmp_path, head, tiny_space):
    arch = random_arch(supernet, random.Random(8))
    model = supernet.extract(arch, head=head, num_labels=3).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    loaded = AUTO[head].from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert loaded.config.arch == arch and loaded.config.model_type == "elasticlm"
    ids, mask, types = batch(tiny_space)
    with torch.no_grad():
        assert torch.equal(head_output(model, head, ids, mask, types), head_output(loaded, head, ids, mask, types))
    if head in ("mlm", "causal"):
        assert loaded.lm_head.decoder.weight is loaded.elasticlm.embeddings.word_embeddings.weight


def test_task_losses(tiny_space):
    space = tiny_space
    arch = space.uniform("mobile", "kv", 24, 4)
    ids, mask, types = batch(tiny_space)
    from elasticlm.models import ElasticLMForMaskedLM, ElasticLMForQuestionAnswering, ElasticLMForSequenceClassification
    reg = ElasticLMForSequenceClassification(ElasticLMConfig.from_space(space, arch, num_labels=1))
    out = reg(ids, mask, types, labels=torch.tensor([0.5, 1.0, -2.0]))
    assert torch.isclose(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), torch.tensor([0.5, 1.0, -2.0])))
    cls = ElasticLMForSequenceClassification(ElasticLMConfig.from_space(space, arch, num_labels=3))
    out = cls(ids, mask, types, labels=torch.tensor([0, 2, 1]))
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2, 1])))
    mlm = ElasticLMForMaskedLM(ElasticLMConfig.from_space(space, arch))
    labels = torch.full_like(ids, -100)
    labels[0, 3] = 5
    out = mlm(ids, mask, types, labels=labels)
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(out.logits[0, 3:4], torch.tensor([5])))
    from elasticlm.models import ElasticLMForCausalLM
    clm = ElasticLMForCausalLM(ElasticLMConfig.from_space(space, arch))
    out = clm(ids, labels=ids)
    manual = sum(torch.nn.functional.cross_entropy(out.logits[b, t], ids[b, t + 1])
                 for b in range(3) for t in range(19)) / (3 * 19)
    assert torch.isclose(out.loss, manual, atol=1e-5)
    qa = ElasticLMForQuestionAnswering(ElasticLMConfig.from_space(space, arch))
    out = qa(ids, mask, types, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([2, 2, 4]))
    assert out.loss.item() > 0 and out.start_logits.shape == (3, 20)


def test_bad_model_inputs(supernet, tiny_space):
    arch = random_arch(supernet, random.Random(9))
    too_long = torch.zeros(1, tiny_space.max_position_embeddings + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        supernet(too_long, arch)
    wide = Architecture((LayerChoice("bert", "none", tiny_space.ffn_grid[-1], 12),) + arch.layers[1:])
    if supernet.block(0, "bert", "none").ffn_dim < tiny_space.ffn_grid[-1]:
        with pytest.raises(ValueError, match="layer 0: ffn_dim .* exceeds the supernet block's current width"):
            supernet(batch(tiny_space)[0], wide)
    with pytest.raises(ValueError, match="layer 0: heads 5"):
        ElasticLMConfig.from_space(tiny_space, Architecture((LayerChoice("bert", "none", 24, 5),) + arch.layers[1:]))
    with pytest.raises(ValueError, match="unknown head"):
        supernet.extract(arch, head="ner")


def test_changing_head_count(supernet, tmp_path, tiny_space):
    arch = random_arch(supernet, random.Random(10))
    model = supernet.extract(arch).eval()
    ids, mask, types = batch(tiny_space)
    kind = arch[1].kind
    new = [h for h in tiny_space.valid_heads(kind) if h != arch[1].heads][0]
    n_params = sum(p.numel() for p in model.parameters())
    model.set_heads(1, new)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert model.config.arch[1].heads == new
    changed = Architecture(arch.layers[:1] + (LayerChoice(kind, arch[1].sharing, arch[1].ffn_dim, new),) + arch.layers[2:])
    with torch.no_grad():
        out = model(ids, mask, types).last_hidden_state
        assert (out - supernet(ids, changed, mask, types).last_hidden_state).abs().max() <= 1e-5
        assert model.encode(ids, mask, types, capture=Capture(attn_probs=True)).attentions[1].shape[1] == new
    model.save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).config.arch == changed
    with pytest.raises(ValueError, match="layer 1: heads 7"):
        model.set_heads(1, 7)


def test_grown_supernet_state_loads_into_a_fresh_supernet(supernet, tmp_path, tiny_space):
    from safetensors.torch import load_file, save_file
    save_file(supernet.state_dict(), tmp_path / "supernet.safetensors")
    fresh = SuperNet(SupernetConfig(tiny_space)).eval()
    fresh.load_state_dict(load_file(tmp_path / "supernet.safetensors"))
    assert fresh.widths() == supernet.widths()
    arch = random_arch(supernet, random.Random(12))
    ids, mask, types = batch(tiny_space)
    with torch.no_grad():
        assert torch.equal(fresh(ids, arch, mask, types).last_hidden_state,
                           supernet(ids, arch, mask, types).last_hidden_state)


def test_bf16_autocast_subnet_matches_supernet(supernet, tiny_space):
    ids, mask, types = batch(tiny_space)
    rng = random.Random(13)
    for _ in range(4):
        arch = random_arch(supernet, rng)
        model = supernet.extract(arch).eval()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            a = supernet(ids, arch, mask, types).last_hidden_state
            b = model(ids, mask, types).last_hidden_state
        assert a.dtype == torch.bfloat16 and (a.float() - b.float()).abs().max() <= 1e-2


def test_trace_with_an_unpadded_example_keeps_padding(supernet, tiny_space):
    """The mask path must not depend on the mask's values: a graph traced with an all-ones mask
    still masks padding (it used to lose the mask input and ignore padding)."""
    arch = random_arch(supernet, random.Random(3))
    model = supernet.extract(arch, attention_backend="eager").eval()
    ids, mask, types = batch(tiny_space)
    ones = torch.ones_like(mask)

    with torch.no_grad():
        traced = torch.jit.trace(LastHidden(model), (ids, ones), check_trace=False)
        expected = model(ids, attention_mask=mask).last_hidden_state
        got = traced(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head", ALL_HEADS)
def test_gradient_checkpointing_gives_the_same_gradients(supernet, head, tiny_space):
    arch = random_arch(supernet, random.Random(5))
    ids, mask, types = batch(tiny_space)
    grads = []
    model = supernet.extract(arch, head=head, num_labels=3, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0).train()
    for ckpt in (False, True):
        model.zero_grad(set_to_none=True)
        if ckpt:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        head_output(model, head, ids, mask, types).float().pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("head", ["mlm", "causal"])
def test_resize_token_embeddings_resizes_the_lm_bias(supernet, head, tiny_space):
    model = supernet.extract(random_arch(supernet, random.Random(6)), head=head).eval()
    model.resize_token_embeddings(tiny_space.vocab_size + 5)
    ids = torch.randint(0, tiny_space.vocab_size + 5, (2, 7))
    assert model(ids).logits.shape == (2, 7, tiny_space.vocab_size + 5)
    assert model.lm_head.bias.shape == (tiny_space.vocab_size + 5,)


def test_num_parameters_agrees_with_the_space_count(supernet, tiny_space):
    arch = random_arch(supernet, random.Random(7))
    model = supernet.extract(arch)
    count = tiny_space.count_params(arch)
    assert model.num_parameters() == count.total
    assert model.num_parameters(exclude_embeddings=True) == count.non_embedding
