"""`elasticlm bench`: every registered benchmark runs in one go (tiny settings here) and its ratios reach
the JSON; options are checked by name and type; `--run` times a run's models against BERT."""

from __future__ import annotations

import json
import random

import pytest

from elasticlm import cli
from elasticlm.bench import BENCHMARKS, Benchmark, get_benchmark
from elasticlm.bench.models import bert_of_budget
from elasticlm.bench.runner import parse_options, run_benchmarks
from elasticlm.errors import ElasticLMError


def tiny_options(teacher) -> list[str]:
    return [f"train.teacher={teacher}", "train.batch=2", "train.seq=8", "train.repeats=1", "train.steps=2",
            "latency.subnets=2", "latency.seq_len=8", "latency.repeats=1", "latency.clock=cpu",
            "search.examples=16"]


def test_every_benchmark_runs_and_every_ratio_reaches_the_json(tmp_path, cache, tiny_teacher, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--quick", "--threads", "1", "--json", str(out), *tiny_options(tiny_teacher)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert set(report["benchmarks"]) == {b.name for b in BENCHMARKS}
    assert not report["errors"]
    names = [r["name"] for r in report["ratios"]]
    # core: path fwd+bwd, inference vs BertModel; train: KD step, MFU, dynamic/fixed; latency predictor; search;
    # generate: cached tokens/s vs Llama, cached vs uncached; workers: side by side vs one after the other
    assert len(names) == 10 and len(set(names)) == 10
    for r in report["ratios"]:
        assert r["ratio"] == r["ratio"] and r["ratio"] > 0 and isinstance(r["ok"], bool)
        assert f"target {r['cmp']} {r['target']:g}" in printed and r["name"] in printed
    lat = report["benchmarks"]["latency"]["results"][0]
    assert len(lat["subnets"]) == 2 and lat["seq_len"] == 8 and lat["threads"] == 1
    assert lat["ratio"] == pytest.approx(sorted(s["rel_error"] for s in lat["subnets"])[0] / 2
                                         + sorted(s["rel_error"] for s in lat["subnets"])[1] / 2, abs=1e-4)
    assert "ratios, " in printed and "missed their target" in printed


def test_registry_adds_a_benchmark_with_one_entry(monkeypatch):
    import elasticlm.bench as bench

    entry = Benchmark("toy", "tests_toy_bench:toy", "a toy")
    import sys
    import types

    module = types.ModuleType("tests_toy_bench")

    def toy(*, quick: bool = False, factor: float = 2.0, say=print) -> dict:
        return {"name": "toy ratio", "ratio": factor, "target": 1.5, "cmp": "<="}

    module.toy = toy
    monkeypatch.setitem(sys.modules, "tests_toy_bench", module)
    monkeypatch.setattr(bench, "BENCHMARKS", (*bench.BENCHMARKS, entry))
    assert get_benchmark("toy") is entry
    out = run_benchmarks(["toy"], options=parse_options(["toy.factor=1"]), say=lambda s: None)
    assert out["ratios"] == [{"benchmark": "toy", "name": "toy ratio", "ratio": 1.0, "target": 1.5, "cmp": "<=",
                              "ok": True}]
    assert run_benchmarks(["toy"], say=lambda s: None)["missed"] == 1


def test_options_are_checked_by_name_and_type():
    assert parse_options(["latency.subnets=3", "train.teacher=./my-bert"]) == {
        "latency": {"subnets": 3}, "train": {"teacher": "./my-bert"}}
    assert parse_options(["train.teacher=123"]) == {"train": {"teacher": "123"}}
    assert parse_options(["generate.hidden=96", "generate.new=8"]) == {"generate": {"hidden": 96, "new": 8}}
    for bad, match in (("nope.x=1", "unknown benchmark 'nope'"), ("latency.nope=1", "unknown option latency.nope"),
                       ("latency.subnets=many", "expected an integer"), ("latency=3", "NAME.key=value")):
        with pytest.raises(ElasticLMError, match=match):
            parse_options([bad])


def test_bench_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["bench", "--compare-only"]) == 2
    assert cli.main(["bench", "--run", str(tmp_path), "--compare-only"]) == 2
    err = capsys.readouterr().err
    assert "--compare-only needs --run" in err and "holds no saved model" in err
    assert cli.main(["bench", "latency.subnets=x"]) == 2


def test_bert_of_the_same_budget_is_close():
    for params, layers in ((4_400_000, 4), (15_700_000, 12)):
        cfg = bert_of_budget(params, layers=layers, vocab_size=30522, max_positions=512)
        from transformers import BertModel

        n = BertModel(cfg).num_parameters()
        assert abs(n - params) / params < 0.1 and cfg.intermediate_size == 4 * cfg.hidden_size
        assert cfg.hidden_size % cfg.num_attention_heads == 0


def test_run_folder_models_are_timed_against_bert_and_the_baselines(tmp_path, tiny_space, capsys):
    from elasticlm.models import ElasticLMConfig, ElasticLMForSequenceClassification

    archs = {"found": tiny_space.sample(random.Random(0)), "uniform-bert": tiny_space.uniform("bert", "none", 48, 12),
             "uniform-mobile": tiny_space.uniform("mobile", "none", 96, 12)}
    for name, arch in archs.items():
        ElasticLMForSequenceClassification(ElasticLMConfig.from_space(tiny_space, arch, num_labels=2)).save_pretrained(
            tmp_path / "run" / "models" / name)
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--run", str(tmp_path / "run"), "--compare-only", "--quick", "--threads", "1",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    models = json.loads(out.read_text())["models"]
    assert set(models["models"]) == {"found", "hf-bert-same-budget", "uniform-bert", "uniform-mobile"}
    assert models["seq_len"] == 64  # the tiny models' positions (N=128 is clamped)
    for m in models["models"].values():
        assert set(m["latency_ms"]) == {"1", "32"} and all(v > 0 for v in m["latency_ms"].values())
    assert set(models["ratios"]) == {"found / hf-bert-same-budget", "found / uniform-bert", "found / uniform-mobile"}
    assert "hf-bert-same-budget" in printed and "found / uniform-mobile" in printed and "B=32" in printed
    assert "benchmarks" not in json.loads(out.read_text())
