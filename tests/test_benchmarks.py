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
    assert "FFN work was" in out


def test_path_ffn_work_weighs_a_unit_of_width_by_the_block_that_has_it():
    from elasticlm.bench.train import path_ffn_work
    from elasticlm.space import get_preset

    space = get_preset("small").space  # d = 528, mobile inner i = 132, two FFNs per mobile block
    d, q = space.hidden_size, space.hidden_size // 4
    start = {(l, k, s): q for l in range(space.num_layers) for k, s in space.candidates}
    assert path_ffn_work(space, start, [], 3) == [0.25] * 3
    bert = [{"block": [l, "bert", s], "after": 2 * d} for l in range(space.num_layers) for s in space.sharings]
    grow_bert = {"step": 2, "blocks": bert}  # every bert block to 2d after step 2, mobile blocks stay at d/4
    work = path_ffn_work(space, start, [grow_bert, {"step": 3, "stopped": True}], 4)
    # a bert FFN unit costs d, a mobile one 2·i = d/2: (d·2d + d/2·d/4) / (d·d + d/2·d) = (2 + 1/8) / 1.5
    assert work[:2] == [0.25, 0.25] and work[2] == work[3] == (2 + 1 / 8) / 1.5
