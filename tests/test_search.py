"""Evolution, NSGA-II and random search with synthetic fitness; scoring equals the standalone model."""

from __future__ import annotations

import json
import random
import zlib

import numpy as np
import pytest
import torch

from elasticlm.errors import ElasticLMError
from elasticlm.search.evolution import Budget, EvolutionConfig, best_within, evolve, random_search
from elasticlm.search.pareto import pareto_front, pareto_json, pareto_search
from elasticlm.space import get_preset


def synthetic(calls: list | None = None):
    """A deterministic fitness with structure (wider FFNs and mobile blocks help) plus hash noise."""
    def fitness(archs):
        if calls is not None:
            calls.extend(archs)
        return [sum(l.ffn_dim for l in a) / 1000 + 0.1 * sum(l.kind == "mobile" for l in a)
                + (zlib.crc32(a.short().encode()) % 1000) / 1e5 for a in archs]
    return fitness


SPACE = get_preset("micro").space


def content(path):
    """A generations log without its wall-clock times."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]
CFG = EvolutionConfig(population=12, generations=4, parents=4, seed=3)


def test_evolution_is_seeded_within_budget_and_never_scores_twice(tmp_path):
    calls: list = []
    budget = Budget(4_600_000, floor=4_000_000)
    a = evolve(SPACE, synthetic(calls), CFG, budget=budget, log=tmp_path / "a.jsonl")
    b = evolve(SPACE, synthetic(), CFG, budget=budget, log=tmp_path / "b.jsonl")
    assert a.best == b.best and a.scores == b.scores
    assert content(tmp_path / "a.jsonl") == content(tmp_path / "b.jsonl")
    assert len(calls) == len(set(calls)) == len(a.scores) == CFG.population * (CFG.generations + 1)
    for arch in a.scores:
        assert 4_000_000 <= SPACE.count_params(arch).total <= 4_600_000
    lines = [json.loads(l) for l in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [l["generation"] for l in lines] == list(range(CFG.generations + 1))
    assert lines[-1]["best"]["fitness"] == a.best_fitness
    assert all(c["params"] == SPACE.count_params(
        __import__("elasticlm.space", fromlist=["Architecture"]).Architecture.from_list(c["arch"])).total
        for l in lines for c in l["population"])
    # the best so far never gets worse
    bests = [l["best"]["fitness"] for l in lines]
    assert bests == sorted(bests)
    other = evolve(SPACE, synthetic(), EvolutionConfig(population=12, generations=4, parents=4, seed=4),
                   budget=budget)
    assert other.scores != a.scores


def test_killed_search_resumes_to_the_same_result(tmp_path):
    full = evolve(SPACE, synthetic(), CFG, log=tmp_path / "full.jsonl")
    text = (tmp_path / "full.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    # killed after generation 1, in the middle of writing generation 2
    (tmp_path / "cut.jsonl").write_text("".join(lines[:2]) + lines[2][:40])
    calls: list = []
    resumed = evolve(SPACE, synthetic(calls), CFG, log=tmp_path / "cut.jsonl")
    assert resumed.best == full.best and resumed.scores == full.scores
    assert content(tmp_path / "cut.jsonl") == content(tmp_path / "full.jsonl")
    assert len(calls) == CFG.population * (CFG.generations - 1)  # generations 0 and 1 came from the log


def test_resume_refuses_a_log_of_another_search(tmp_path):
    evolve(SPACE, synthetic(), CFG, log=tmp_path / "g.jsonl")
    with pytest.raises(ElasticLMError, match="another search"):
        evolve(SPACE, synthetic(), EvolutionConfig(population=12, generations=4, parents=4, seed=9),
               log=tmp_path / "g.jsonl")


def test_budget_outside_the_space_names_the_achievable_range():
    lo, hi = SPACE.param_range()
    with pytest.raises(ElasticLMError, match=f"achievable: {lo:,} to {hi:,}"):
        evolve(SPACE, synthetic(), CFG, budget=Budget(lo - 1))
    with pytest.raises(ElasticLMError, match="achievable"):
        evolve(SPACE, synthetic(), CFG, budget=Budget(floor=hi + 1))


def test_small_spaces_run_out_of_candidates_gracefully():
    widths = {(l, k, s): SPACE.hidden_size for l in range(SPACE.num_layers) for k, s in SPACE.candidates}
    tiny = get_preset("demo").space  # 6^4 = 1296 architectures at fixed widths
    widths = {(l, k, s): 96 for l in range(tiny.num_layers) for k, s in tiny.candidates}
    out = evolve(tiny, synthetic(), EvolutionConfig(population=400, generations=10, parents=10, max_redraws=20),
                 budget=Budget(None), widths=widths)
    assert len(out.scores) == len(set(out.scores)) <= 6 ** 4


def test_constraint_is_respected():
    def small_first(arch):
        return arch[0].kind == "mobile"
    out = evolve(SPACE, synthetic(), CFG, accept=small_first)
    assert all(a[0].kind == "mobile" for a in out.scores)


def test_random_search_reuses_known_scores():
    calls: list = []
    evo = evolve(SPACE, synthetic(), CFG)
    rnd = random_search(SPACE, synthetic(calls), 30, seed=0, known=evo.scores)
    assert len(rnd.scores) == 30 and len(set(calls)) == len(calls)
    assert all(a not in evo.scores for a in calls)


def dominated(p, q):
    return q[0] <= p[0] and q[1] >= p[1] and q != p


def test_pareto_front_is_non_dominated_and_holds_the_best_within_each_budget(tmp_path):
    res = pareto_search(SPACE, synthetic(), CFG, log=tmp_path / "p.jsonl")
    pts = {a: (SPACE.count_params(a).total, s) for a, s in res.scores.items()}
    front = [pts[a] for a in res.front]
    assert front and all(not dominated(f, q) for f in front for q in pts.values())
    # every non-front point is dominated by some front point
    for a, p in pts.items():
        if a not in res.front:
            assert any(dominated(p, f) or (f[0] <= p[0] and f[1] >= p[1]) for f in front)
    # single-objective evolution and the front over the same candidates
    evo = evolve(SPACE, synthetic(), CFG, budget=Budget(4_500_000))
    front = pareto_front(evo.scores, SPACE)
    assert evo.best in front
    data = pareto_json(SPACE, res.scores, "accuracy", {"micro": 4_500_000})
    best = best_within(res.scores, SPACE, Budget(4_500_000))
    assert data["budgets"]["micro"]["short"] == best.short()
    assert [c["params"] for c in data["front"]] == sorted(c["params"] for c in data["front"])
    # deterministic, and resumes by replay from its log
    again = pareto_search(SPACE, synthetic(), CFG, log=tmp_path / "p.jsonl")
    assert again.scores == res.scores


def test_pareto_front_helper_on_known_points():
    archs = [SPACE.sample(random.Random(i)) for i in range(40)]
    scores = {a: float(np.random.default_rng(i).random()) for i, a in enumerate(archs)}
    front = pareto_front(scores, SPACE)
    for a in scores:
        p = (SPACE.count_params(a).total, scores[a])
        beaten = any(SPACE.count_params(b).total <= p[0] and scores[b] > p[1] for b in scores if b != a)
        assert (a in front) == (not beaten)


@pytest.fixture
def tiny_net(tiny_space):
    from elasticlm.train.supernet import build_supernet

    net = build_supernet(tiny_space, fixed=False, seed=0, task_heads={"toy": {"kind": "classification",
                                                                             "num_labels": 3}})
    return net


def test_search_fitness_equals_the_extracted_standalone_model(tiny_net, tiny_space):
    import datasets

    from elasticlm.data.spec import TaskSpec
    from elasticlm.search.evaluator import SupernetFitness
    from elasticlm.train.evaluation import Batches, evaluate_model

    spec = TaskSpec(name="toy", kind="classification", text_fields=("sentence",), label_names=("a", "b", "c"),
                    metrics=("accuracy",), main_metric="accuracy")
    g = torch.Generator().manual_seed(0)
    rows = []
    for i in range(70):
        n = int(torch.randint(3, 20, (1,), generator=g))
        ids = torch.randint(5, tiny_space.vocab_size, (n,), generator=g).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * n, "token_type_ids": [0] * n, "labels": i % 3})
    ds = datasets.Dataset.from_list(rows)
    batches = Batches.build(ds, 0, batch_size=16)
    fit = SupernetFitness(tiny_net, "toy", spec, batches, bf16=False)
    for seed in range(3):
        arch = tiny_space.sample(random.Random(seed), tiny_net.widths())
        score = fit([arch])[0]
        model = tiny_net.extract(arch, head="classification", task="toy")
        metrics = evaluate_model(model, batches, spec, bf16=False)
        assert score == pytest.approx(metrics["accuracy"], abs=0)
        # and equal to a plain unsorted, unbucketed pass
        from elasticlm.data.batching import eval_batches
        from elasticlm.kinds import compute_metrics
        preds = []
        with torch.no_grad():
            for b in eval_batches(ds, 7, 0):
                preds.append(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits)
        plain = compute_metrics(spec, torch.cat(preds).numpy(), np.asarray(ds["labels"]))
        assert plain["accuracy"] == metrics["accuracy"]


DIST_SEARCH = """
import json, random, sys
import datasets, torch
from elasticlm.data.spec import TaskSpec
from elasticlm.search.evaluator import SupernetFitness
from elasticlm.search.evolution import EvolutionConfig, evolve
from elasticlm.space import SearchSpace
from elasticlm.runtime import Dist
from elasticlm.train.evaluation import Batches
from elasticlm.train.supernet import build_supernet
dist = Dist.setup()
space = SearchSpace(hidden_size=48, num_layers=4, num_heads=12, embedding_size=16, vocab_size=97,
                    max_position_embeddings=64)
net = build_supernet(space, fixed=False, seed=0, task_heads={"toy": {"kind": "classification", "num_labels": 3}})
rng = random.Random(0)
rows = [{"input_ids": [rng.randrange(5, 97) for _ in range(k)], "attention_mask": [1] * k, "token_type_ids": [0] * k,
         "labels": i % 3} for i, k in enumerate(rng.randint(3, 20) for _ in range(60))]
batches = Batches.build(datasets.Dataset.from_list(rows), 0, batch_size=16)
spec = TaskSpec("toy", "classification", ("t",), ("a", "b", "c"), ("accuracy",), "accuracy")
fit = SupernetFitness(net, "toy", spec, batches, bf16=False, dist=dist)
out = evolve(space, fit, EvolutionConfig(population=5, generations=2, parents=2), widths=net.widths())
open(sys.argv[1] + f".{dist.rank}", "w").write(json.dumps({a.short(): s for a, s in out.scores.items()}))
"""


def test_distributed_scoring_equals_one_process(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "s.py"
    script.write_text(DIST_SEARCH)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = Path(sys.executable).parent / "torchrun"
    two = subprocess.run([str(torchrun), "--nproc_per_node=2", "--master_port=29531", str(script),
                          str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    ref = json.loads((tmp_path / "one.0").read_text())
    assert json.loads((tmp_path / "two.0").read_text()) == ref == json.loads((tmp_path / "two.1").read_text())
