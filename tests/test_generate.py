"""Key/value cache and generation of ElasticLMForCausalLM: causality, cached = uncached for every
block kind and sharing variant (incl. left padding), sampling options, eos, context limit."""

from __future__ import annotations

import pytest
import torch

from elasticlm.errors import ElasticLMError
from elasticlm.models import ElasticLMConfig, ElasticLMForCausalLM
from elasticlm.space import SHARINGS, Architecture

KINDS = ("bert", "mobile")


def make_model(space, kind: str, sharing: str, seed: int = 0) -> ElasticLMForCausalLM:
    """A random decoder of one kind/sharing (layers alternate with other variants so mixed stacks are covered)."""
    other = "mobile" if kind == "bert" else "bert"
    layers = []
    for l in range(space.num_layers):
        k = kind if l % 2 == 0 else other
        layers.append({"kind": k, "sharing": sharing if l % 2 == 0 else SHARINGS[(l // 2) % 3],
                       "ffn_dim": space.ffn_grid[l % len(space.ffn_grid)], "heads": 4 if k == "bert" else 2})
    cfg = ElasticLMConfig.from_space(space, Architecture.from_list(layers), hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0, pad_token_id=0, eos_token_id=None)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = ElasticLMForCausalLM(cfg)
    return model.eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sharing", SHARINGS)
def test_future_tokens_never_change_past_logits(tiny_space, kind, sharing):
    model = make_model(tiny_space, kind, sharing)
    ids = torch.randint(5, tiny_space.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 7:] = torch.randint(5, tiny_space.vocab_size, (2, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids).logits
        other = model(changed).logits
        prefix = model(ids[:, :7]).logits
    torch.testing.assert_close(full[:, :7], other[:, :7], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full[:, :7], prefix, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full[:, 7:], other[:, 7:])  # the changed tokens do matter later on


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sharing", SHARINGS)
def test_cached_steps_equal_full_forward(tiny_space, kind, sharing):
    model = make_model(tiny_space, kind, sharing)
    ids = torch.randint(5, tiny_space.vocab_size, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids).logits  # 2×10×V
        out = model(ids[:, :6], use_cache=True)
        steps = [out.logits]
        for t in range(6, 10):
            out = model(ids[:, t:t + 1], cache=out.cache, use_cache=True)
            steps.append(out.logits)
    assert out.cache.get_seq_length() == 10
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sharing", SHARINGS)
def test_cached_generation_equals_uncached(tiny_space, kind, sharing):
    model = make_model(tiny_space, kind, sharing, seed=4)
    ids = torch.randint(5, tiny_space.vocab_size, (2, 6), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # the second prompt is left-padded
    with torch.no_grad():
        cached = model.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False, use_cache=True)
        plain = model.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False, use_cache=False)
        alone = model.generate(ids[1:, 2:], max_new_tokens=16, do_sample=False)
    assert cached.shape == (2, 22)
    assert torch.equal(cached, plain)
    assert torch.equal(cached[1, 2:], alone[0])  # left padding changes nothing


def test_sampling_options_and_eos(tiny_space):
    model = make_model(tiny_space, "bert", "none")
    ids = torch.randint(5, tiny_space.vocab_size, (1, 4), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        greedy = model.generate(ids, max_new_tokens=12, do_sample=False)
        runs = []
        for seed in (0, 0, 1):
            with torch.random.fork_rng():  # generate() samples from the global generator
                torch.manual_seed(seed)
                runs.append(model.generate(ids, max_new_tokens=12, do_sample=True, temperature=1.5, top_k=20,
                                           top_p=0.9))
        top1 = model.generate(ids, max_new_tokens=12, do_sample=True, top_k=1)
        eos = int(greedy[0, 6])
        stopped = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
    assert torch.equal(top1, greedy)  # top-k 1 sampling is greedy
    first = (stopped[0, 4:] == eos).nonzero()[0, 0].item() + 4
    assert first <= 6 and torch.equal(stopped[0, :first + 1], greedy[0, :first + 1])
    assert stopped.shape[1] == first + 1  # stops at eos


def test_prompt_longer_than_context_is_a_user_error(tiny_space):
    model = make_model(tiny_space, "bert", "none")
    with pytest.raises(ElasticLMError, match="context"):
        model(torch.ones(1, tiny_space.max_position_embeddings + 1, dtype=torch.long), use_cache=True)
    with pytest.raises(ElasticLMError, match="context"):
        model.generate(torch.ones(1, tiny_space.max_position_embeddings - 2, dtype=torch.long), max_new_tokens=5)


def test_encoder_rejects_cache(tiny_space):
    from elasticlm.models import ElasticLMModel
    cfg = ElasticLMConfig.from_space(tiny_space, tiny_space.uniform("bert", "none", 48, 4))
    with pytest.raises(ElasticLMError, match="decoder"):
        ElasticLMModel(cfg).decode(torch.ones(1, 3, dtype=torch.long))


def test_generate_command_streams_and_rejects_long_prompts(tiny_space, tiny_tokenizer, tmp_path, capsys):
    from dataclasses import replace

    from elasticlm.cli import main

    tok = tiny_tokenizer(["hello", "world", "what", "is", "it"])
    tok.eos_token = "[SEP]"
    space = replace(tiny_space, vocab_size=len(tok))
    cfg = ElasticLMConfig.from_space(space, space.uniform("bert", "qv", 48, 4), pad_token_id=0,
                                     eos_token_id=tok.eos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ElasticLMForCausalLM(cfg).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "m"), "hello world", "--raw", "--max-new-tokens", "6"]) == 0
    streamed = capsys.readouterr().out
    from elasticlm.clm.generate import generate_text

    reply = generate_text(tmp_path / "m", "hello world", chat=False, max_new_tokens=6, stream=False)
    assert streamed.strip() == reply.strip()
    assert main(["generate", str(tmp_path / "m"), "hello " * 70, "--raw"]) == 2
    err = capsys.readouterr().err
    lines = [l for l in err.strip().splitlines() if "error" in l]
    assert len(lines) == 1 and "context" in lines[0] and "shorten the prompt" in lines[0]
