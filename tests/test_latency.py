"""Latency: honest timing, the per-block table (sum = prediction, cached per machine, keyed by the
space's dimensions) and model_latency for any HF encoder."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch

import elasticlm.search.latency as latency
from elasticlm.errors import ElasticLMError
from elasticlm.search.latency import LatencyTable, block_key, measure_latency, model_latency, table_key
from elasticlm.space import Architecture, LayerChoice, SearchSpace

# d=16, i=4: heads {1, 2} for both kinds; FFN grid 4..32
SPACE = SearchSpace(hidden_size=16, num_layers=3, num_heads=2, embedding_size=8, vocab_size=50,
                    max_position_embeddings=16)
FAST = dict(seq_len=8, ffn_dims=[4, 8], warmup=0, repeats=2)


def test_measure_latency_is_the_median_of_the_timed_calls():
    calls = []
    ms = measure_latency(lambda a, b=0: calls.append((a, b)), (1,), warmup=2, repeats=5)
    assert len(calls) == 7 and ms >= 0
    calls.clear()
    measure_latency(lambda a, b: calls.append((a, b)), {"a": 1, "b": 2}, warmup=0, repeats=3)
    assert calls == [(1, 2)] * 3
    assert torch.is_inference_mode_enabled() is False
    seen = []
    measure_latency(lambda: seen.append(torch.is_inference_mode_enabled()), repeats=1, warmup=0)
    assert seen == [True]
    import time
    slow = measure_latency(lambda: time.sleep(0.02), repeats=3, warmup=0)
    assert 15 < slow < 500
    with pytest.raises(ElasticLMError):
        measure_latency(lambda: None, repeats=0)
    with pytest.raises(ElasticLMError, match="clock"):
        measure_latency(lambda: None, clock="gpu")
    assert measure_latency(lambda: time.sleep(0.02), repeats=3, warmup=0, clock="cpu") < 15  # waiting is no CPU


def test_table_has_every_distinct_block_and_predicts_their_sum():
    table = LatencyTable.build(SPACE, **FAST)
    blocks = [k for k in table.entries if k not in ("embeddings", "head")]
    # 2 kinds × 3 sharings × 2 widths × 2 head counts
    assert len(blocks) == 24 and all(v > 0 for v in table.entries.values())
    arch = Architecture((LayerChoice("bert", "qv", 8, 2), LayerChoice("mobile", "none", 4, 1),
                         LayerChoice("bert", "qv", 8, 2)))
    e = table.entries
    blocks_sum = e["bert/qv/8/2"] * 2 + e["mobile/none/4/1"]
    assert table.predict(arch, head=False) == pytest.approx(e["embeddings"] + blocks_sum)
    assert table.predict(arch) == pytest.approx(e["embeddings"] + blocks_sum + e["head"])
    with pytest.raises(ElasticLMError, match="no entry for block bert/none/32/2"):
        table.predict(Architecture((LayerChoice("bert", "none", 32, 2),) * 3))
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table and block_key(arch[1]) == "mobile/none/4/1"


def test_table_is_cached_per_machine_and_not_measured_twice(cache, monkeypatch):
    count = []
    real = latency.measure_latency

    def counting(*args, **kwargs):
        count.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(latency, "measure_latency", counting)
    first = LatencyTable.load_or_build(SPACE, **FAST)
    assert len(count) == len(first.entries) == 26
    path = LatencyTable.path_for(first.key)
    assert path.parent == cache / "latency" and path.exists()
    second = LatencyTable.load_or_build(SPACE, **FAST)
    assert len(count) == 26 and second == first  # loaded, nothing measured
    LatencyTable.load_or_build(SPACE, **FAST, rebuild=True)
    assert len(count) == 52
    other = LatencyTable.load_or_build(dataclasses.replace(SPACE, embedding_size=4), **FAST)
    assert len(count) == 78 and other.key != first.key


def test_table_key_follows_the_space_dims_dtype_and_machine(monkeypatch):
    key = table_key(SPACE)
    assert key == table_key(SPACE)
    assert key == table_key(dataclasses.replace(SPACE, num_layers=5, param_ceiling=10**6))  # blocks don't care
    for changed in (dict(hidden_size=32), dict(num_heads=4), dict(vocab_size=60), dict(mobile_ffns=1),
                    dict(sharings=("none",))):
        assert table_key(dataclasses.replace(SPACE, **changed)) != key, changed
    assert table_key(SPACE, dtype="bfloat16") != key and table_key(SPACE, seq_len=64) != key
    assert table_key(SPACE, batch=2) != key and table_key(SPACE, clock="cpu") != key
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert table_key(SPACE) != key


def test_prediction_tracks_the_measured_model_order_of_magnitude():
    """The sum lands near the standalone model's measured latency (loose: this machine is shared)."""
    from elasticlm.models import ElasticLMConfig, ElasticLMModel

    space = dataclasses.replace(SPACE, hidden_size=64, num_heads=2, max_position_embeddings=32, num_layers=2)
    arch = space.uniform("bert", "none", 64, 2)
    with latency.num_threads(1):  # one thread, CPU clock: steady on a machine other processes keep busy
        table = LatencyTable.build(space, seq_len=32, ffn_dims=[64], warmup=2, repeats=10, clock="cpu")
        measured = model_latency(ElasticLMModel(ElasticLMConfig.from_space(space, arch)), seq_len=32, repeats=10,
                                 clock="cpu")
    assert 0.2 < table.predict(arch, head=False) / measured < 5


def test_model_latency_of_elasticlm_and_bert_models():
    from transformers import BertConfig, BertModel

    from elasticlm.models import ElasticLMConfig, ElasticLMForSequenceClassification

    arch = SPACE.sample(random.Random(0))
    ours = ElasticLMForSequenceClassification(ElasticLMConfig.from_space(SPACE, arch)).train()
    assert model_latency(ours, batch=2, seq_len=8, repeats=2, warmup=1) > 0
    assert ours.training  # mode restored
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=16))
    assert model_latency(bert, batch=1, seq_len=16, repeats=2, warmup=1, device="cpu") > 0
    with pytest.raises(ElasticLMError, match="max_position_embeddings 16"):
        model_latency(bert, seq_len=17)
    with pytest.raises(ElasticLMError, match="off the growth grid"):
        LatencyTable.build(SPACE, seq_len=8, ffn_dims=[5])
    with pytest.raises(ElasticLMError, match="max_position_embeddings"):
        LatencyTable.build(SPACE, seq_len=128)
