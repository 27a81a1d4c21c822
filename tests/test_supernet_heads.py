"""The supernet's own heads (MLM, one per task) carry into extracted standalone models: the extracted
model's logits equal the supernet's on that path, and save/reload keeps them."""

import random

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from elasticlm.errors import ElasticLMError
from elasticlm.kinds import kind_named
from elasticlm.models import SuperNet, SupernetConfig
from elasticlm.space import SearchSpace

SPACE = SearchSpace(hidden_size=48, num_layers=3, num_heads=12, embedding_size=16, vocab_size=97,
                    max_position_embeddings=64)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = SuperNet(SupernetConfig(SPACE))
    gen = torch.Generator().manual_seed(1)
    net.add_task_head("sent", kind_named("classification"), 3, generator=gen)
    net.add_task_head("rating", kind_named("regression"), 1, generator=gen)
    net.add_task_head("span", kind_named("qa"), 2, generator=gen)
    with torch.no_grad():  # non-trivial head weights, as after training
        for p in list(net.mlm_head.parameters()) + list(net.task_heads.parameters()):
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return net.eval()


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, SPACE.vocab_size, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    return ids, mask


@pytest.mark.parametrize("seed", range(4))
def test_extracted_heads_equal_supernet_heads(net, seed, tmp_path):
    arch = SPACE.sample(random.Random(seed), net.widths())
    ids, mask = _batch()
    with torch.no_grad():
        h = net(ids, arch, attention_mask=mask).last_hidden_state
        mlm = net.extract(arch, head="mlm").eval()
        torch.testing.assert_close(mlm(ids, attention_mask=mask).logits, net.mlm_logits(h), atol=1e-5, rtol=1e-5)
        cls = net.extract(arch, head="classification", task="sent").eval()
        torch.testing.assert_close(cls(ids, attention_mask=mask).logits, net.task_logits("sent", h, mask), atol=1e-5, rtol=1e-5)
        reg = net.extract(arch, head="classification", task="rating").eval()
        assert reg.config.num_labels == 1 and reg.config.problem_type == "regression"
        torch.testing.assert_close(reg(ids, attention_mask=mask).logits, net.task_logits("rating", h, mask), atol=1e-5, rtol=1e-5)
        qa = net.extract(arch, head="qa", task="span").eval()
        out = qa(ids, attention_mask=mask)
        torch.testing.assert_close(torch.stack([out.start_logits, out.end_logits], -1), net.task_logits("span", h),
                                   atol=1e-5, rtol=1e-5)
    if seed == 0:  # the carried heads survive save/reload
        mlm.save_pretrained(tmp_path / "mlm")
        cls.save_pretrained(tmp_path / "cls")
        with torch.no_grad():
            a = AutoModelForMaskedLM.from_pretrained(tmp_path / "mlm").eval()(ids, attention_mask=mask).logits
            b = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls").eval()(ids, attention_mask=mask).logits
        torch.testing.assert_close(a, net.mlm_logits(h))
        torch.testing.assert_close(b, net.task_logits("sent", h, mask))


def test_head_errors_and_reload_of_heads(net):
    arch = SPACE.sample(random.Random(0), net.widths())
    with pytest.raises(ElasticLMError, match="no head for task"):
        net.extract(arch, head="classification", task="nope")
    with pytest.raises(ElasticLMError, match="head='qa'"):
        net.extract(arch, head="classification", task="span")
    with pytest.raises(ElasticLMError, match="exists as classification"):
        net.add_task_head("sent", kind_named("classification"), 2)
    fresh = SuperNet(SupernetConfig(SPACE))
    for task, spec in net.task_head_specs().items():
        fresh.add_task_head(task, kind_named(spec["kind"]), spec["num_labels"])
    fresh.load_state_dict(net.state_dict())
    ids, mask = _batch()
    with torch.no_grad():
        h = fresh.eval()(ids, arch, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(fresh.task_logits("sent", h, mask), net.task_logits("sent", h, mask))
    assert "mlm_head.decoder.weight" not in net.state_dict()  # tied: the embedding is the only copy
