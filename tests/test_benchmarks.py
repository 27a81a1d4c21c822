"""Each benchmark runs alone (`elasticlm bench --only NAME --quick`), prints what it measured and puts its
ratios, each beside its target, into the JSON (speed itself is not asserted here)."""

import json

import pytest

from elasticlm import cli

PRINTED = {
    "core": {"supernet path fwd+bwd  demo": 1, "inference vs BertModel d=": 4},
    "train": {"KD step bf16:": 1, "KD step fp32:": 1, "dynamic vs fixed widths, 10 steps": 1, "FFN work was": 1},
    "generate": {"tok/s, LlamaForCausalLM": 1, "uncached greedy: elasticlm": 1},
}
"""Benchmark -> {a fragment of the lines it prints: how many times}."""


@pytest.mark.parametrize("name", PRINTED)
def test_one_benchmark_runs_alone(name, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--only", name, "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for fragment, times in PRINTED[name].items():
        assert printed.count(fragment) == times, fragment
    report = json.loads(out.read_text())
    assert set(report["benchmarks"]) == {name} and not report["errors"] and report["ratios"]
    for r in report["ratios"]:
        assert r["benchmark"] == name and r["ratio"] > 0 and f"target {r['cmp']} {r['target']:g}" in printed


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
