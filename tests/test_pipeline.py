"""A seconds-scale `elasticlm run` end to end: every artifact, resume between and inside stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from elasticlm.config import to_dict
from elasticlm.experiment.run import RunConfig, run_pipeline

from conftest import STAGE_VOCAB, tiny_run_config

SPACE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "embedding_size": 16, "vocab_size": len(STAGE_VOCAB),
         "max_position_embeddings": 32, "param_ceiling": 14000}
MODELS = ("found", "uniform-bert", "uniform-mobile", "random-search", "teacher", "majority", "tfidf-logreg")


def tiny_config(teacher_dir: Path, corpus: Path, sentiment: Path, **top) -> RunConfig:
    return tiny_run_config(SPACE, pretrain_steps=8, epochs=1.0, teacher_epochs=2.0, search_batch=32, checkpoint_every=4,
                           task=str(sentiment), teacher=str(teacher_dir), corpus=str(corpus), **top)


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ELASTICLM_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def finished(teacher_dir, word_corpus, sentiment, tmp_path_factory):
    os.environ["ELASTICLM_CACHE"] = str(tmp_path_factory.getbasetemp() / "cache")
    out = tmp_path_factory.mktemp("run") / "tiny"
    cfg = tiny_config(teacher_dir, word_corpus, sentiment)
    cfg.retrain.workers = 2  # the four models retrained side by side, in forked workers
    lines: list[str] = []
    metrics = run_pipeline(cfg, out, say=lines.append)
    return out, cfg, metrics, lines


def test_run_writes_every_artifact(finished):
    out, cfg, metrics, _ = finished
    for f in ("run_config.json", "arch.json", "metrics.json", "report.md", "export/config.json",
              "supernet/growth.jsonl", "search/generations.jsonl", "search/pareto.json", "heads/cka.npz",
              "heads/heads.json"):
        assert (out / f).exists(), f
    import re

    pngs = re.findall(r"\]\((report/[^)]+\.png)\)", (out / "report.md").read_text())
    assert len(pngs) >= 6 and all((out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    saved = json.loads((out / "metrics.json").read_text())
    assert list(saved) == list(MODELS) and saved == json.loads(json.dumps(metrics))
    for name, m in saved.items():
        assert isinstance(m["params"], int) and isinstance(m["latency_ms"], float), name
        assert set(m["dev"]) == {"accuracy", "f1"} and set(m["test"]) == {"accuracy", "f1"}, name
    from elasticlm.space import SearchSpace
    from elasticlm.train.supernet import resolve_space

    space = resolve_space("demo", SPACE)
    arch = space.arch_from_json((out / "arch.json").read_text())
    assert saved["found"]["params"] == space.count_params(arch).total <= SPACE["param_ceiling"]
    assert saved["uniform-bert"]["params"] <= SPACE["param_ceiling"]
    assert isinstance(space, SearchSpace)
    # every baseline says what it got: uniform-bert from scratch, pretrained like the supernet
    supernet_steps = json.loads((out / "supernet" / "result.json").read_text())["steps"]
    assert saved["uniform-bert"]["recipe"] == {"weights": "scratch", "embedding": "teacher",
                                               "pretrain_steps": supernet_steps}
    assert saved["found"]["recipe"]["weights"] == "supernet path"
    assert (out / "pretrain" / "uniform-bert" / "seed-0" / "result.json").exists()
    taught = json.loads((out / "models" / "found" / "result.json").read_text())["teacher"]
    assert taught == {k: saved["teacher"][k] for k in ("dev", "test")}  # the teacher that taught it
    sig = json.loads((out / "significance.json").read_text())
    assert (sig["metric"], sig["split"], sig["seeds"]) == ("accuracy", "test", 1)
    assert set(sig["pairs"]) == set(MODELS) - {"found"} and not sig["missing"]
    for pair in sig["pairs"].values():
        lo, hi = pair["ci95"]
        assert lo <= pair["diff"] <= hi and 0 <= pair["win_rate"] <= 1
        assert pair["diff"] == pytest.approx(pair["found"] - pair["other"])
    assert sig["pairs"]["teacher"]["other"] == pytest.approx(saved["teacher"]["test"]["accuracy"], abs=0.02)
    assert sig["pairs"]["majority"]["other"] == pytest.approx(saved["majority"]["test"]["accuracy"])
    assert "Which differences are real" in (out / "report.md").read_text()


def test_rerun_skips_every_stage(finished):
    out, cfg, metrics, _ = finished
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    lines: list[str] = []
    again = run_pipeline(cfg, out, say=lines.append)
    assert again == metrics
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == before
    text = "\n".join(lines)
    for what in ("pretraining already complete", "fine-tuning already complete", "search already complete",
                 "head search already complete", "already retrained"):
        assert what in text, what


def test_killed_between_and_inside_stages_resumes(finished, teacher_dir, word_corpus, sentiment, tmp_path):
    out, cfg, metrics, _ = finished
    # a copy whose search is cut after generation 0 and whose found model lost its result
    import shutil

    run = tmp_path / "run"
    shutil.copytree(out, run)
    gens = (run / "search" / "generations.jsonl").read_text().splitlines(keepends=True)
    (run / "search" / "generations.jsonl").write_text(gens[0])
    for f in ("search/result.json", "search/pareto.json", "heads/result.json", "metrics.json"):
        (run / f).unlink()
    shutil.rmtree(run / "models" / "found")
    again = run_pipeline(cfg, run, say=lambda s: None)
    strip = lambda m: {k: v for k, v in m.items() if k != "latency_ms"}  # noqa: E731  (timed anew)
    assert strip(again["found"]) == strip(metrics["found"])
    assert json.loads((run / "search" / "result.json").read_text())["best"] == \
        json.loads((out / "search" / "result.json").read_text())["best"]


def test_another_config_is_refused_and_force_starts_over(finished, teacher_dir, word_corpus, sentiment):
    from elasticlm.errors import ElasticLMError

    out, cfg, _, _ = finished
    other = tiny_config(teacher_dir, word_corpus, sentiment, seed=1)
    with pytest.raises(ElasticLMError, match="another config.*--force"):
        run_pipeline(other, out, say=lambda s: None)
    assert json.loads((out / "run_config.json").read_text())["config"] == to_dict(cfg.resolved())


def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  evolution:\n    popsize: 3\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "elasticlm", "run", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "popsize" in r.stderr
    r = subprocess.run([sys.executable, "-m", "elasticlm", "run", "--out", str(tmp_path / "o"), "search.mode=3"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "search.mode" in r.stderr


def test_every_config_file_validates():
    from elasticlm.config import apply_yaml
    from elasticlm.presets import get_config

    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert {f.stem for f in files} >= {"demo", "micro", "tiny", "small"}
    for f in files:
        cfg = apply_yaml(get_config("demo"), str(f))
        cfg.resolved()
        if f.stem in ("demo", "micro", "tiny", "small"):
            assert to_dict(cfg) == to_dict(get_config(f.stem)), f"{f} differs from the {f.stem} preset"


def cli(*args, cache_dir: Path | None = None):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "elasticlm", *map(str, args)], capture_output=True, text=True,
                          env=env)


def test_stage_commands_on_a_finished_run(finished, sentiment, tmp_path):
    out, cfg, metrics, _ = finished
    r = cli("evaluate", out / "models" / "found", "--task", sentiment, "--max-length", 128, "--json", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["dev"]["accuracy"] == pytest.approx(metrics["found"]["dev"]["accuracy"])
    # a supernet without a task head, an invalid arch.json, a budget outside the space: exit 2, one line
    r = cli("search", "--supernet", out / "supernet", "--out", tmp_path / "s")
    assert r.returncode == 2 and "no task head" in r.stderr and r.stderr.count("\n") == 1
    bad = tmp_path / "arch.json"
    bad.write_text(json.dumps({"layers": [{"kind": "bert", "sharing": "none", "ffn_dim": 7, "heads": 4}] * 2}))
    r = cli("heads", "--supernet", out / "supernet-ft", "--arch", bad, "--out", tmp_path / "h")
    assert r.returncode == 2 and "ffn_dim" in r.stderr and not (tmp_path / "h").exists()
    r = cli("search", "--supernet", out / "supernet-ft", "--ceiling", 10, "--out", tmp_path / "s2")
    assert r.returncode == 2 and "achievable" in r.stderr and not (tmp_path / "s2").exists()
    r = cli("export", tmp_path, "--out", tmp_path / "x")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_compare_reuses_the_run_and_prints_its_table(finished, tmp_path):
    from elasticlm.experiment.compare import table

    out, cfg, metrics, _ = finished
    saved = (out / "metrics.json").read_text()
    r = cli("compare", out)
    assert r.returncode == 0, r.stderr
    assert (out / "metrics.json").read_text() == saved  # every model reused: the same metrics.json
    assert r.stdout.rstrip("\n").endswith(table(json.loads(saved)))
    r = cli("compare", tmp_path)
    assert r.returncode == 2 and "not a run folder" in r.stderr and r.stderr.count("\n") == 1


def test_compare_with_more_seeds_reports_their_spread(finished, tmp_path):
    import shutil

    out, cfg, metrics, _ = finished
    run = tmp_path / "run"
    shutil.copytree(out, run)
    r = cli("compare", run, "--seeds", "0", "1")
    assert r.returncode == 0, r.stderr
    saved = json.loads((run / "metrics.json").read_text())
    for name in ("found", "uniform-bert", "uniform-mobile", "random-search"):
        assert saved[name]["seeds"] == 2 and (run / "models" / name / "seed-1" / "result.json").exists()
        assert saved[name]["per_seed"]["test"]["accuracy"][0] == metrics[name]["test"]["accuracy"]  # seed 0 reused
        assert "accuracy" in saved[name]["std"]["test"]
    assert json.loads((run / "significance.json").read_text())["seeds"] == 2
    assert "±" in r.stdout


def test_retrain_command_runs_its_seeds_side_by_side(finished, tmp_path):
    """`elasticlm retrain --seeds 0 1 workers=2` (as scripts/levers.sh calls it, with the run's recipe):
    the two seeds train in two forked workers, each says its lines prefixed, both folders are written."""
    import yaml

    out, cfg, metrics, _ = finished
    c = json.loads((out / "run_config.json").read_text())["config"]
    recipe = {k: v for k, v in c["retrain"].items() if k != "seeds"}
    recipe.update(task=c["task"], teacher=c["teacher"], data_dir=c["data_dir"], corpus=c["corpus"])
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    r = cli("retrain", "--supernet", out / "supernet-ft", "--arch", out / "arch.json", "--config",
            tmp_path / "recipe.yaml", "--seeds", "0", "1", "--out", tmp_path / "r", "workers=2", "train.max_steps=3")
    assert r.returncode == 0, r.stderr
    assert "[seed 0]" in r.stdout and "[seed 1]" in r.stdout
    for folder in (tmp_path / "r", tmp_path / "r" / "seed-1"):
        assert json.loads((folder / "result.json").read_text())["steps"] == 3


def test_ablate_refuses_an_unknown_variant(tmp_path):
    r = cli("ablate", "--preset", "demo", "--variants", "full", "no-such", "--out", tmp_path / "abl")
    assert r.returncode == 2 and "unknown ablation variant 'no-such'" in r.stderr and not (tmp_path / "abl").exists()


def test_ablation_grid_writes_its_table(teacher_dir, word_corpus, sentiment, tmp_path):
    from elasticlm.experiment.ablation import ablate

    cfg = tiny_config(teacher_dir, word_corpus, sentiment)
    notes: list[str] = []
    res = ablate(cfg, tmp_path / "abl", variants=["full", "no-head-search"], seeds=[0], rank_archs=3,
                 say=notes.append)
    saved = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert saved == res and [r["variant"] for r in res["rows"]] == ["full", "no-head-search"]
    for r in res["rows"]:
        assert 0 <= r["dev_mean"] <= 1 and r["seeds"] == 1 and "test_mean" in r
        ranking = json.loads((tmp_path / "abl" / r["variant"] / "seed-0" / "rank-check" / "ranking.json").read_text())
        assert set(r["kendall_tau"]) == set(ranking["fitnesses"]) >= {"metric"}
        for fit, t in r["kendall_tau"].items():  # τ beside the accuracy, from that run's rank-check
            assert t["per_seed"] == [ranking["fitnesses"][fit]["kendall_tau"]]
    from elasticlm.report.tables import ablation_table

    pair = res["rows"][1]["vs_full"]  # no-head-search against full, paired over the same test examples
    assert pair["split"] == "test" and pair["ci95"][0] <= pair["diff"] <= pair["ci95"][1]
    assert pair["verdict"] in {"better than full", "worse than full", "within noise"} and "vs_full" not in res["rows"][0]
    table, said = ablation_table(res)
    assert "τ (metric)" in table[0] and any("95% paired bootstrap" in s for s in said)
    arch = json.loads((tmp_path / "abl" / "no-head-search" / "seed-0" / "arch.json").read_text())
    searched = json.loads((tmp_path / "abl" / "no-head-search" / "seed-0" / "search" / "result.json").read_text())
    assert arch["layers"] == searched["best"]["arch"]  # heads left as searched
    assert not (tmp_path / "abl" / "full" / "seed-0" / "models" / "uniform-bert").exists()
    # run again without rank_archs: every run is done, and τ comes from the rank-checks already there
    again = ablate(cfg, tmp_path / "abl", variants=["full", "no-head-search"], seeds=[0], say=notes.append)
    assert [r["kendall_tau"] for r in again["rows"]] == [r["kendall_tau"] for r in res["rows"]]
    assert any("Kendall tau from the rank-check already there" in n for n in notes)
