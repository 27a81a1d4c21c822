"""`elasticlm rank-check`: Kendall's τ and its bootstrap interval against naive references, the seeded
stratified draw, the teacher-agreement fitness against a naive per-example KL, and the command end to end
on a seconds-scale run (ranking.json's shape, resuming without retraining, the report's section)."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from elasticlm.errors import ElasticLMError
from elasticlm.experiment.ranking import arch_name, bootstrap_tau, draw_stratified, kendall_tau, rank_agreement
from elasticlm.space import Architecture

from conftest import STAGE_VOCAB, tiny_run_config


def naive_tau_b(x, y) -> float:
    """Kendall's τ-b from its definition: (concordant − discordant) over the tie-corrected pair counts."""
    conc = disc = tie_x = tie_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = x[i] - x[j], y[i] - y[j]
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            tie_x += 1
        elif dy == 0:
            tie_y += 1
        elif dx * dy > 0:
            conc += 1
        else:
            disc += 1
    den = math.sqrt((conc + disc + tie_x) * (conc + disc + tie_y))
    return (conc - disc) / den if den else float("nan")


def test_tau_and_its_bootstrap_interval_match_a_naive_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=10)
    y = x + rng.normal(scale=0.7, size=10)
    y[3] = y[4]  # a tie
    assert kendall_tau(x, y) == pytest.approx(naive_tau_b(x, y))
    res = rank_agreement(x, y, seed=1, resamples=300)
    assert res["kendall_tau"] == pytest.approx(naive_tau_b(x, y))
    from scipy.stats import spearmanr

    assert res["spearman"] == pytest.approx(spearmanr(x, y).statistic)
    # the interval: percentiles of τ over resamples of the architectures (with replacement), seeded
    taus = bootstrap_tau(x, y, seed=1, resamples=300)
    assert np.array_equal(taus, bootstrap_tau(x, y, seed=1, resamples=300), equal_nan=True)
    assert not np.array_equal(taus, bootstrap_tau(x, y, seed=2, resamples=300), equal_nan=True)
    rng2 = np.random.default_rng(random.Random("1:rank-bootstrap").getrandbits(64))
    idx = rng2.integers(0, 10, size=(300, 10))
    naive = np.asarray([naive_tau_b(x[i], y[i]) for i in idx])
    assert np.allclose(taus, naive, equal_nan=True)
    ok = naive[np.isfinite(naive)]
    assert res["ci95"] == pytest.approx([np.percentile(ok, 2.5), np.percentile(ok, 97.5)])
    assert res["ci95"][0] <= res["kendall_tau"] <= res["ci95"][1]
    perfect = rank_agreement([1, 2, 3, 4], [10, 20, 30, 40], seed=0, resamples=200)
    assert perfect["kendall_tau"] == pytest.approx(1.0) and perfect["ci95"] == pytest.approx([1.0, 1.0])
    flat = rank_agreement([1, 1, 1], [1, 2, 3], seed=0, resamples=200)
    assert flat["kendall_tau"] is None and flat["ci95"] == [None, None]  # undefined: JSON null, never NaN


def test_ranking_json_gives_tau_against_each_seed_alone_when_several_ran(tiny_space):
    from elasticlm.experiment.rank_check import Candidate, ranking_json

    archs = draw_stratified(tiny_space, 5, floor=0, ceiling=10**9, seed=0)
    cands = [Candidate(a, "drawn", 1000 + i) for i, a in enumerate(archs)]
    seed0, seed1 = [0.70, 0.72, 0.71, 0.75, 0.74], [0.71, 0.70, 0.74, 0.73, 0.76]
    results = [[{"test": {"accuracy": a}}, {"test": {"accuracy": b}}] for a, b in zip(seed0, seed1)]
    fitness = [0.1, 0.2, 0.3, 0.4, 0.5]
    r = ranking_json("metric", "accuracy", cands, {"metric": fitness}, results, seed=0, resamples=50, notes=[],
                     seeds=[0, 1])
    m = r["fitnesses"]["metric"]
    assert m["per_seed_tau"] == pytest.approx([kendall_tau(fitness, seed0), kendall_tau(fitness, seed1)])
    assert m["kendall_tau"] == pytest.approx(kendall_tau(fitness, [(a + b) / 2 for a, b in zip(seed0, seed1)]))
    one = ranking_json("metric", "accuracy", cands, {"metric": fitness}, [r[:1] for r in results], seed=0,
                       resamples=50, notes=[], seeds=[0])
    assert "per_seed_tau" not in one["fitnesses"]["metric"]


def test_stratified_draw_is_seeded_spread_and_within_the_range(tiny_space):
    from elasticlm.search.baselines import uniform_mobile

    lo, hi = tiny_space.param_range()
    floor, ceiling = lo + (hi - lo) // 5, lo + (hi - lo) // 2
    found = tiny_space.sample_within(random.Random(0), ceiling, floor=floor)
    mobile = uniform_mobile(tiny_space, ceiling)
    draw = lambda seed: draw_stratified(tiny_space, 6, floor=floor, ceiling=ceiling, seed=seed,  # noqa: E731
                                        exclude=[found, mobile])
    a = draw(0)
    assert a == draw(0) and a != draw(1)
    assert len(set(a)) == 6 and found not in a and mobile not in a
    params = [tiny_space.count_params(x).total for x in a]
    assert all(floor <= p <= ceiling for p in params)
    edges = np.linspace(floor, ceiling, 7)
    assert all(edges[i] - 1 <= p <= edges[i + 1] for i, p in enumerate(params)), (params, edges)  # one per stratum
    names = [arch_name(x) for x in a]
    assert len(set(names)) == 6 and all("/" not in n and " " not in n for n in names)


def test_candidates_hold_found_and_uniform_mobile(tiny_space):
    from elasticlm.experiment.rank_check import candidates

    lo, hi = tiny_space.param_range()
    ceiling = lo + (hi - lo) // 2
    best = tiny_space.sample_within(random.Random(3), ceiling)
    found = {"best": {"arch": best.to_list(), "params": tiny_space.count_params(best).total},
             "ceiling": ceiling, "floor": None}
    widths = {(l, k, s): max(tiny_space.ffn_grid) for l in range(tiny_space.num_layers)
              for k, s in tiny_space.candidates}
    cands, notes = candidates(tiny_space, widths, found, 5, seed=0)
    assert [c.role for c in cands] == ["found", "uniform-mobile", "drawn", "drawn", "drawn"]
    assert cands[0].arch == best and all(c.params <= ceiling for c in cands)
    assert any("uniform-bert" in n for n in notes) and any("before head search" in n for n in notes)
    again, _ = candidates(tiny_space, widths, found, 5, seed=0)
    assert [c.arch for c in again] == [c.arch for c in cands]


def _toy(tiny_space, n=40, labels=3):
    import datasets

    from elasticlm.data.spec import TaskSpec
    from elasticlm.train.supernet import build_supernet

    spec = TaskSpec(name="toy", kind="classification", text_fields=("sentence",),
                    label_names=tuple("abc"[:labels]), metrics=("accuracy",), main_metric="accuracy")
    net = build_supernet(tiny_space, fixed=False, seed=0, task_heads={"toy": {"kind": "classification",
                                                                             "num_labels": labels}})
    g = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(n):
        k = int(torch.randint(3, 16, (1,), generator=g))
        ids = torch.randint(5, tiny_space.vocab_size, (k,), generator=g).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * k, "token_type_ids": [0] * k})
    return spec, net, datasets.Dataset.from_list(rows)


def test_agreement_fitness_is_minus_the_mean_kl_and_prefers_the_teachers_own_path(tiny_space):
    from elasticlm.search.evaluator import AgreementFitness
    from elasticlm.train.evaluation import Batches, path_predictions

    spec, net, ds = _toy(tiny_space)
    batches = Batches.build(ds, 0, batch_size=8)
    archs = [tiny_space.sample(random.Random(s), net.widths()) for s in range(4)]
    teacher = path_predictions(net, archs[0], "toy", batches, bf16=False)  # a "teacher" that is path 0
    fit = AgreementFitness(net, "toy", spec, batches, teacher, bf16=False)
    scores = fit(archs)
    assert scores[0] == pytest.approx(0.0, abs=1e-6) and max(scores) == scores[0]
    assert all(s < -1e-6 for s in scores[1:])
    model = net.extract(archs[2], head="classification", task="toy").eval()  # naive: row by row, unbucketed
    kls = []
    with torch.no_grad():
        for row, t in zip(ds, teacher):
            s = model(input_ids=torch.tensor([row["input_ids"]]),
                      attention_mask=torch.tensor([row["attention_mask"]])).logits[0].double()
            p_t = torch.softmax(torch.as_tensor(t, dtype=torch.float64), -1)
            p_s = torch.softmax(s, -1)
            kls.append(float(sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))))
    assert scores[2] == pytest.approx(-np.mean(kls), rel=1e-4, abs=1e-6)


def test_fitness_config_is_checked_and_qa_has_no_agreement():
    from elasticlm.data.tasks import ALL_TASKS
    from elasticlm.search.search_stages import SearchConfig, SearchInputs, make_fitness

    SearchConfig(fitness="agreement", fitness_augment=0).validate()
    with pytest.raises(ElasticLMError, match="search.fitness must be one of metric, agreement"):
        SearchConfig(fitness="loss").validate()
    with pytest.raises(ElasticLMError, match="fitness_augment"):
        SearchConfig(fitness_augment=-1).validate()
    qa = next(s for s in ALL_TASKS.values() if s.kind == "qa")
    inp = SearchInputs(None, {}, qa.name, qa, [], None, 0, 32)
    with pytest.raises(ElasticLMError, match="fitness 'agreement' needs one output per example.*search.fitness=metric"):
        make_fitness(SearchConfig(fitness="agreement"), inp, device="cpu", bf16=False)


# ------------------------------------------------------------------------------------------------
# end to end on a seconds-scale run
# ------------------------------------------------------------------------------------------------

SPACE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "embedding_size": 16, "vocab_size": len(STAGE_VOCAB),
         "max_position_embeddings": 32, "param_ceiling": 14000}


@pytest.fixture(scope="module")
def tiny_run(teacher_dir, word_corpus, sentiment, tmp_path_factory):
    from elasticlm.experiment.run import run_pipeline

    os.environ["ELASTICLM_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    out = tmp_path_factory.mktemp("rank") / "run"
    cfg = tiny_run_config(SPACE, pretrain_steps=6, epochs=1.0, teacher_epochs=2.0, search_batch=32, checkpoint_every=4,
                          task=str(sentiment), teacher=str(teacher_dir), corpus=str(word_corpus), baselines=[],
                          tfidf=False, export=False, report=False)
    run_pipeline(cfg, out, say=lambda s: None)
    return out


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ELASTICLM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_rank_check_end_to_end_writes_ranking_resumes_and_reports(tiny_run, capsys):
    from elasticlm import cli
    from elasticlm.report import write_report

    argv = ["rank-check", str(tiny_run), "--archs", "4", "--seeds", "0", "--resamples", "200"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "fitness metric" in printed and "fitness agreement" in printed and "Kendall τ" in printed
    folder = tiny_run / "rank-check"
    ranking = json.loads((folder / "ranking.json").read_text())
    assert ranking["fitness"] == "metric" and ranking["metric"] == "accuracy" and ranking["split"] == "test"
    assert set(ranking["fitnesses"]) == {"metric", "agreement"}
    for r in ranking["fitnesses"].values():
        assert set(r) == {"kendall_tau", "ci95", "spearman"} and len(r["ci95"]) == 2
    assert ranking["kendall_tau"] == ranking["fitnesses"]["metric"]["kendall_tau"]
    archs = ranking["archs"]
    assert [a["role"] for a in archs] == ["found", "uniform-mobile", "drawn", "drawn"]
    best = json.loads((tiny_run / "search" / "result.json").read_text())["best"]
    assert archs[0]["arch"] == best["arch"] and archs[0]["fitness"] == pytest.approx(best["fitness"])
    for a in archs:
        assert a["params"] <= SPACE["param_ceiling"]
        assert set(a["retrained"]) == {"mean", "std", "per_seed"} and len(a["retrained"]["per_seed"]) == 1
        assert a["fitness"] == a["fitnesses"]["metric"] and a["fitnesses"]["agreement"] <= 0
        result = json.loads((folder / "models" / a["name"] / "seed-0" / "result.json").read_text())
        assert a["retrained"]["mean"] == result["test"]["accuracy"]
    # a rerun retrains nothing
    models = {p: p.stat().st_mtime_ns for p in (folder / "models").rglob("*") if p.is_file()}
    lines: list[str] = []
    from elasticlm.experiment.rank_check import RankCheckConfig, rank_check

    again = rank_check(tiny_run, RankCheckConfig(archs=4, seeds=[0], resamples=200), say=lines.append)
    assert again == ranking
    assert {p: p.stat().st_mtime_ns for p in (folder / "models").rglob("*") if p.is_file()} == models
    assert sum("already retrained" in line for line in lines) == 4
    said = next(line for line in lines if line.startswith("teacher agreement on"))
    held, extra = (int(n.replace(",", "")) for n in re.findall(r"\(([\d,]+) held-out \+ ([\d,]+) augmented", said)[0])
    assert held > 0 and extra > 0  # the held-out split and its teacher-labelled copies
    with pytest.raises(ElasticLMError, match="another config"):
        rank_check(tiny_run, RankCheckConfig(archs=5, seeds=[0], resamples=200), say=lines.append)
    text = write_report(tiny_run).read_text()
    assert "## Can the supernet tell architectures apart?" in text
    assert "| **held-out accuracy** |" in text and "| teacher agreement (−KL) |" in text
    assert "![supernet fitness vs retrained metric" in text and (tiny_run / "report" / "rank_check.png").exists()
    assert "uniform-bert is left out" in text


def test_search_with_the_agreement_fitness(tiny_run, tmp_path):
    from dataclasses import replace

    from elasticlm.experiment.rank_check import load_run
    from elasticlm.run_layout import RunLayout
    from elasticlm.search.search_stages import run_search

    cfg, _ = load_run(tiny_run)
    # a search folder of the default fitness does not name it (so folders made before the field resume)
    assert "fitness" not in json.loads((tiny_run / "search" / "run_config.json").read_text())["config"]
    lines: list[str] = []
    res = run_search(replace(cfg.search, fitness="agreement", random_baseline=False), RunLayout(tiny_run).supernet_ft,
                     tmp_path / "search", say=lines.append)
    assert res["fitness"] == "agreement" and res["best"]["fitness"] <= 0
    claim = json.loads((tmp_path / "search" / "run_config.json").read_text())["config"]
    assert (claim["fitness"], claim["fitness_augment"]) == ("agreement", 2)
    assert json.loads((tmp_path / "search" / "pareto.json").read_text())["metric"] == "agreement"
    assert any("fitness agreement" in line for line in lines)


def test_report_section_from_ranking_json_alone(tmp_path):
    """The report draws ranking.json whatever it holds: undefined τ as a dash, a fitness scored for no
    architecture left out of the figure; without the file the section is not there at all."""
    from elasticlm.report import write_report

    run = tmp_path / "run"
    (run / "rank-check").mkdir(parents=True)
    (run / "run_config.json").write_text(json.dumps({"stage": "run", "config": {}}))
    assert "Can the supernet" not in write_report(run).read_text()
    archs = [{"arch": [], "name": f"a{i}", "params": 1000 * i, "role": role, "fitness": 0.5 + 0.1 * i,
              "fitnesses": {"metric": 0.5 + 0.1 * i, "agreement": None},
              "retrained": {"mean": 0.6 + 0.05 * i, "std": 0.01, "per_seed": [0.6 + 0.05 * i]}}
             for i, role in enumerate(["found", "uniform-mobile", "drawn", "drawn"])]
    ranking = {"fitness": "agreement", "kendall_tau": None, "ci95": [None, None], "spearman": None,
               "metric": "f1", "split": "dev", "seeds": [0], "archs": archs, "notes": ["a note"],
               "fitnesses": {"metric": {"kendall_tau": 1.0, "ci95": [1.0, 1.0], "spearman": 1.0},
                             "agreement": {"kendall_tau": None, "ci95": [None, None], "spearman": None}}}
    (run / "rank-check" / "ranking.json").write_text(json.dumps(ranking))
    text = write_report(run).read_text()
    assert "## Can the supernet tell architectures apart?" in text
    assert "| held-out f1 | +1.00 | [+1.00, +1.00] | +1.00 |" in text
    assert "| **teacher agreement (−KL)** | – | – | – |" in text
    assert "4 architectures (1 found, 1 uniform-mobile, 2 drawn)" in text and "_Note: a note._" in text
    assert (run / "report" / "rank_check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
