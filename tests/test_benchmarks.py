"""The benchmark scripts run and print their ratios (speed itself is not asserted here)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_core_benchmark_quick(capsys):
    assert load("bench_core").main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "supernet path fwd+bwd" in out and out.count("inference vs BertModel") == 4
    assert "summary: supernet/standalone" in out


def test_train_benchmark_quick(capsys):
    assert load("bench_train").main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert out.count("KD step") == 2 and "dynamic vs fixed widths" in out and "summary: KD supernet/standalone" in out
