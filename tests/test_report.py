"""`elasticlm report`: report.md and its PNGs from a run folder's files, for a finished run and for a
partial one; the win/lose sentences follow the numbers; writing a report loads no torch (the report's
imports are checked with every layer's in tests/test_layering.py)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from elasticlm import cli
from elasticlm.errors import ElasticLMError
from elasticlm.report import write_report
from elasticlm.report.tables import verdicts
from elasticlm.space import Architecture, LayerChoice, get_preset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPACE = get_preset("demo").space  # d=192, L=4, H=12
ALL_SECTIONS = ("## Results", "## The found architecture", "## Search", "## FFN growth in supernet pretraining",
                "## PCA scores per layer", "## Head search", "## Block similarity: relational vs classic distillation",
                "## Ablation", "## How it was made, what it cost")
ALL_FIGURES = ("growth.png", "pca_scores.png", "cka_heads.png", "block_similarity.png", "architecture.png",
               "search_progress.png", "pareto.png")
FOUND = Architecture((LayerChoice("bert", "qv", 144, 6), LayerChoice("mobile", "none", 96, 4),
                      LayerChoice("bert", "none", 192, 12), LayerChoice("mobile", "kv", 48, 2)))
SEARCHED = Architecture(tuple(LayerChoice(l.kind, l.sharing, l.ffn_dim, 12) for l in FOUND))  # before head search


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def _cand(arch: Architecture, fitness: float) -> dict:
    return {"arch": arch.to_list(), "short": arch.short(), "params": SPACE.count_params(arch).total,
            "fitness": fitness}


def default_metrics(found_test: float = 0.801, tfidf_test: float = 0.789) -> dict:
    def m(params, lat, dev, test, **extra):
        return {"params": params, "latency_ms": lat, "dev": {"accuracy": dev, "f1": dev - 0.01},
                "test": {"accuracy": test, "f1": test + 0.005}, **extra}

    return {"found": m(SPACE.count_params(FOUND).total, 3.1, 0.792, found_test, seeds=3,
                       std={"dev": {"accuracy": 0.004, "f1": 0.005}, "test": {"accuracy": 0.003, "f1": 0.004}}),
            "uniform-bert": m(4_480_000, 3.4, 0.781, 0.779, seeds=1),
            "uniform-mobile": m(4_390_000, 4.0, 0.770, 0.772, seeds=1),
            "random-search": m(4_310_000, 3.3, 0.785, 0.783, seeds=1),
            "teacher": m(22_713_216, 21.5, 0.846, 0.853),
            "majority": {"params": 0, "latency_ms": 0.0, "dev": {"accuracy": 0.5, "f1": 0.667},
                         "test": {"accuracy": 0.5, "f1": 0.667}},
            "tfidf-logreg": {**m(40_002, float("nan"), 0.77, tfidf_test), "C": 4.0}}


def make_run(root: Path, *, metrics: dict | None = None, parts: tuple[str, ...] | None = None) -> Path:
    """A finished tiny run folder with plausible files (every file of the run-folder contract). `parts`
    keeps only those groups: config, supernet, search, heads, arch, metrics, ablation, models."""
    keep = set(parts) if parts is not None else {"config", "supernet", "search", "heads", "arch", "metrics",
                                                 "ablation", "models"}
    rng = random.Random(0)
    root.mkdir(parents=True, exist_ok=True)
    if "config" in keep:
        _write(root / "run_config.json", {"stage": "run", "config": {
            "preset": "demo", "task": "rt-polarity", "teacher": "all-minilm-l6-v2", "corpus": "demo", "seed": 0,
            "baselines": ["uniform-bert", "uniform-mobile", "random-search"], "tfidf": True,
            "search": {"mode": "evolution", "ceiling": None, "evolution": {"population": 6, "generations": 3}},
            "retrain": {"seeds": [0, 1, 2], "init": "supernet", "pretrain_steps": 0, "train": {"epochs": 3.0}}}})
    if "supernet" in keep:
        widths = {(l, k, s): 48 for l in range(SPACE.num_layers) for k, s in SPACE.candidates}
        lines = []
        for rnd in (1, 2, 3):
            blocks = []
            scored = {b: round(rng.uniform(0.5, 0.85), 5) for b in widths}
            grow = sorted(scored, key=scored.get, reverse=True)[:7]
            for b in widths:
                before = widths[b]
                widths[b] = min(2 * SPACE.hidden_size, before + 48) if b in grow else before
                blocks.append({"block": list(b), "score": scored[b], "before": before, "after": widths[b]})
            lines.append({"step": 50 * rnd, "round": rnd, "grown": [list(b) for b in grow],
                          "mean_width": float(np.mean(list(widths.values()))), "seconds": 0.4 * rnd,
                          "blocks": blocks})
        lines.append({"step": 200, "round": 3, "stopped": True, "mean_width": lines[-1]["mean_width"]})
        (root / "supernet").mkdir(parents=True, exist_ok=True)
        (root / "supernet" / "growth.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
        _write(root / "supernet" / "config.json", {"space": SPACE.to_dict(),
                                                   "widths": {f"{l}/{k}/{s}": w for (l, k, s), w in widths.items()}})
        _write(root / "supernet" / "result.json", {"stage": "pretrain", "steps": 240, "tokens": 983040,
                                                   "seconds": 291.8, "growth_rounds": 3, "mean_ffn_width": 76.0})
        _write(root / "supernet-ft" / "result.json", {
            "stage": "finetune", "steps": 714, "tokens": 614628, "seconds": 237.6,
            "tasks": {"rt-polarity": {"metric": "accuracy", "summary": {"heldout": {"mean": 0.793}}}}})
    if "search" in keep:
        seen: dict[Architecture, float] = {}
        best, gen_lines = None, []
        for g in range(4):
            pop = [SPACE.sample_within(rng) for _ in range(5)] + [SEARCHED if g == 3 else SPACE.sample_within(rng)]
            # fitness grows with size and with the generations; the found architecture (before head search) last
            scores = [round(0.55 + 0.05 * SPACE.count_params(a).total / 1e6 + 0.01 * g + rng.uniform(0, 0.03), 4)
                      for a in pop]
            if g == 3:
                scores[-1] = max(scores) + 0.004
            for a, s in zip(pop, scores):
                seen[a] = s
                if best is None or s > best["fitness"]:
                    best = _cand(a, s)
            gen_lines.append({"generation": g, "population": [_cand(a, s) for a, s in zip(pop, scores)],
                              "evaluated": len(seen), "best": best, "mean_fitness": float(np.mean(scores)),
                              "seconds": 2.5 * (g + 1)})
        (root / "search").mkdir(parents=True, exist_ok=True)
        (root / "search" / "generations.jsonl").write_text("".join(json.dumps(l) + "\n" for l in gen_lines))
        ranked = sorted(seen.items(), key=lambda kv: (SPACE.count_params(kv[0]).total, -kv[1]))
        front, top = [], -1.0
        for a, s in ranked:
            if s > top:
                front.append(_cand(a, s))
                top = s
        _write(root / "search" / "pareto.json", {"metric": "accuracy", "front": front, "budgets": {},
                                                 "points": [{"params": SPACE.count_params(a).total, "fitness": s}
                                                            for a, s in seen.items()]})
        _write(root / "search" / "result.json", {"stage": "search", "metric": "accuracy", "mode": "evolution",
                                                 "best": best, "evaluated": len(seen), "seconds": 10.2,
                                                 "candidates_per_s": 2.35, "ceiling": SPACE.param_ceiling,
                                                 "random": {**_cand(FOUND, best["fitness"] - 0.012),
                                                            "evaluated": len(seen)}})
    if "heads" in keep:
        mats, records = {}, []
        for l, layer in enumerate(FOUND):
            x = np.random.default_rng(l).normal(size=(12, 5))
            m = np.abs(np.corrcoef(x))
            np.fill_diagonal(m, 1.0)
            mats[f"layer{l}"] = m
            kept = sorted(rng.sample(range(12), layer.heads))
            records.append({"layer": l, "kind": layer.kind, "width": SPACE.attention_width(layer.kind),
                            "heads_before": 12, "kept": kept, "heads_after": layer.heads})
        (root / "heads").mkdir(parents=True, exist_ok=True)
        np.savez(root / "heads" / "cka.npz", **mats)
        _write(root / "heads" / "heads.json", {"eta": 0.9, "layers": records})
        _write(root / "heads" / "result.json", {"stage": "heads", "arch": FOUND.to_list(), "seconds": 1.4,
                                                "heads": [l.heads for l in FOUND]})
    if "arch" in keep:
        _write(root / "arch.json", {"layers": FOUND.to_list()})
    if "metrics" in keep:
        _write(root / "metrics.json", metrics if metrics is not None else default_metrics())
    if "models" in keep:
        for i, seed in enumerate((0, 1, 2)):
            folder = root / "models" / "found" / ("" if i == 0 else f"seed-{seed}")
            _write(folder / "result.json", {"stage": "retrain", "params": 4_400_000, "seed": seed, "steps": 900,
                                            "seconds": 120.0 + seed, "dev": {"accuracy": 0.79}})
        _write(root / "export" / "export.json", {"seconds": 6.5, "onnx": None})
    if "ablation" in keep:
        labels = ["B-", "Bqv", "Bkv", "M-", "Mqv", "Mkv"]
        sim = {}
        for kind, base in (("relational", 0.45), ("classic", 0.75)):
            m = np.clip(base + np.random.default_rng(7).normal(0, 0.05, (6, 6)), 0, 1)
            m = (m + m.T) / 2
            np.fill_diagonal(m, 1.0)
            sim[kind] = {"blocks": labels, "matrix": m.round(4).tolist()}
        _write(root / "ablation" / "similarity.json", sim)
        _write(root / "ablation" / "ablation.json", {"metric": "accuracy", "rows": [
            {"variant": "full", "dev_mean": 0.792, "dev_std": 0.004, "test_mean": 0.801, "test_std": 0.003, "seeds": 3},
            {"variant": "fixed-dims", "dev_mean": 0.781, "dev_std": 0.006, "test_mean": 0.790, "test_std": 0.005,
             "seeds": 3},
            {"variant": "classic-kd", "dev_mean": 0.795, "dev_std": 0.004, "test_mean": 0.799, "test_std": 0.004,
             "seeds": 3}], "notes": {"classic-kd": "the task logit term is the same KL in both rows"}})
    return root


def linked_pngs(report: Path) -> list[Path]:
    return [report.parent / m for m in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())]


def assert_valid_png(path: Path) -> None:
    import matplotlib.image

    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, (path, img.shape)
    assert float(img[..., :3].std()) > 0.01, f"{path} is blank"


def test_finished_run_renders_every_section_with_valid_pngs(tmp_path):
    run = make_run(tmp_path / "run")
    report = write_report(run)
    assert report == run / "report.md"
    text = report.read_text()
    for heading in ALL_SECTIONS:
        assert heading in text, heading
    assert "Skipped" not in text and "skipped" not in text, text
    growth = text.split("## FFN growth in supernet pretraining")[1].split("##")[0]
    assert re.search(r"3 growth rounds over 24 blocks: mean FFN width 48 → \d+; \d+ blocks grew", growth), growth
    assert "nan" not in growth and "Growth stopped at step 200" in growth, growth  # a "stopped" record is no round
    pngs = linked_pngs(report)
    assert sorted(p.name for p in pngs) == sorted(ALL_FIGURES)
    for png in pngs:
        assert png.parent == run / "report"
        assert_valid_png(png)
    # the results table: found first, then the baselines, teacher, majority, tfidf; ± std where given
    table = [l for l in text.splitlines() if l.startswith("| ")]
    order = [l.split("|")[1].strip().strip("*") for l in table if l.split("|")[1].strip().strip("*") in
             default_metrics()]
    assert order == ["found", "uniform-bert", "uniform-mobile", "random-search", "teacher", "majority", "tfidf-logreg"]
    found_row = next(l for l in table if "**found**" in l)
    params = f"{SPACE.count_params(FOUND).total / 1e6:.2f}M"
    assert found_row.startswith(f"| **found** | {params} | 3.10 | 79.2 ± 0.4 | 78.2 ± 0.5 | 80.1 ± 0.3 |"), found_row
    # computed sentences, the ablation table, what it cost
    assert "found beats tfidf-logreg on test accuracy by 1.2 points (80.1 vs 78.9" in text
    assert "found loses to teacher on test accuracy by 5.2 points (80.1 vs 85.3" in text
    assert "On test accuracy, the found model beats 5 of 6 other models and loses to 1 (teacher)." in text
    assert "| fixed-dims | 3 | 78.1 ± 0.6 | 79.0 ± 0.5 |" in text
    assert "fixed-dims: dev -1.1 points, test -1.1 points against the full method (switching it off hurts here)" in text
    assert "- Note on classic-kd: the task logit term is the same KL in both rows." in text
    assert "under relational distillation" in text
    assert "| supernet pretraining | 240 | 0.98M | 4.9 min |" in text
    assert "| retraining found | 2,700 |" in text
    assert "preset **demo** on task **rt-polarity**" in text
    assert "Random search with the same number of scored architectures" in text and "1.2 points above" in text


def test_partial_run_renders_with_missing_sections_noted(tmp_path):
    # a run killed after supernet pretraining: only its config and stage 1
    partial = make_run(tmp_path / "partial", parts=("config", "supernet"))
    text = write_report(partial).read_text()
    for heading in ALL_SECTIONS:
        assert heading in text, heading
    for missing in ("metrics.json", "arch.json", "search/generations.jsonl", "heads/heads.json",
                    "ablation/similarity.json", "ablation/ablation.json"):
        note = [l for l in text.splitlines() if l.startswith("_Skipped:") and f"`{missing}`" in l]
        assert len(note) == 1, (missing, text)
    assert "3 of 9 sections drawn" in text
    assert sorted(p.name for p in linked_pngs(partial / "report.md")) == ["growth.png", "pca_scores.png"]
    for png in linked_pngs(partial / "report.md"):
        assert_valid_png(png)
    assert "| supernet pretraining | 240 |" in text and "| retraining" not in text


def test_results_say_where_latency_was_measured(tmp_path):
    run = make_run(tmp_path / "run", parts=("config", "metrics"))
    assert "on the machine that made the run." in write_report(run).read_text()  # no latency files: unsaid
    for name in ("found", "uniform-bert"):
        _write(run / "models" / name / "latency.json", {"batch1_ms": 2.5, "seq_len": 128, "device": "cuda"})
    _write(run / "models" / "teacher-latency.json", {"batch1_ms": 4.0, "seq_len": 128, "device": "cuda"})
    assert "on the machine that made the run (cuda; TF-IDF on the CPU)." in write_report(run).read_text()
    for f in (run / "models").rglob("*.json"):
        f.write_text(f.read_text().replace('"cuda"', '"cpu"'))
    assert "on the machine that made the run." in write_report(run).read_text()


def test_rerender_drops_figures_of_sections_now_skipped(tmp_path):
    run = make_run(tmp_path / "run", parts=("config", "arch", "metrics"))
    write_report(run)
    assert (run / "report" / "architecture.png").exists()
    (run / "arch.json").unlink()
    text = write_report(run).read_text()
    assert not (run / "report" / "architecture.png").exists()
    assert "_Skipped: no `arch.json` in this run._" in text


def test_unreadable_file_skips_only_its_section(tmp_path):
    run = make_run(tmp_path / "run", parts=("config", "search", "metrics"))
    (run / "metrics.json").write_text('{"found": {"params": 1,')  # a torn write
    with (run / "search" / "generations.jsonl").open("a") as f:
        f.write('{"generation": 4, "popul')  # a torn last line is dropped, the rest kept
    text = write_report(run).read_text()
    assert "_Skipped: `metrics.json` is not valid JSON" in text
    assert "4 generations" in text and "search_progress.png" in text
    skipped = [l for l in text.splitlines() if l.startswith("_Skipped")]
    assert len(skipped) == 7 and "`metrics.json` is not valid JSON" in skipped[0]
    assert "## Search" in text and "_Skipped" not in text.split("## Search")[1].split("## FFN growth")[0]


@pytest.mark.parametrize("tfidf_test", [0.789, 0.813, 0.801])
def test_loses_to_sentence_appears_exactly_when_a_baseline_beats_found(tmp_path, tfidf_test):
    metrics = default_metrics(found_test=0.801, tfidf_test=tfidf_test)
    metrics["teacher"]["dev"]["accuracy"] = metrics["teacher"]["test"]["accuracy"] = 0.79  # found beats the teacher
    run = make_run(tmp_path / "run", metrics=metrics, parts=("config", "metrics"))
    text = write_report(run).read_text()
    losses = [l for l in text.splitlines() if "loses to" in l and l.startswith("- ")]
    if tfidf_test > 0.801:
        assert losses == [l for l in losses if "tfidf-logreg on test accuracy by 1.2 points (80.1 vs 81.3" in l]
        assert len(losses) == 1
        assert "loses to 1 (tfidf-logreg)" in text
    else:
        assert losses == [] and "loses to" not in text
        if tfidf_test == 0.801:
            assert "found ties with tfidf-logreg on test accuracy (80.1)." in text
        else:
            assert "found beats tfidf-logreg on test accuracy by 1.2 points" in text


def test_verdicts_follow_the_numbers():
    m = {"found": {"params": 4_000_000, "dev": {"mcc": 0.30}, "std": {"dev": {"mcc": 0.02}}},
         "uniform-bert": {"params": 4_100_000, "dev": {"mcc": 0.31}},
         "majority": {"params": 0, "dev": {"mcc": 0.0}}}
    said = "\n".join(verdicts(m, "mcc"))
    assert "found loses to uniform-bert on dev mcc by 1.0 points (30.0 vs 31.0; 4.00M vs 4.10M parameters), " \
           "within the spread over seeds (std up to 2.0)." in said
    assert "found beats majority on dev mcc by 30.0 points (30.0 vs 0.0)." in said
    assert "test" not in said
    m["uniform-bert"]["dev"]["mcc"] = 0.30004
    assert "by 0.004 points" in "\n".join(verdicts(m, "mcc"))
    assert verdicts({"teacher": {"dev": {"mcc": 0.5}}}, "mcc") == []


def test_the_folder_of_elasticlm_ablate_renders_its_table(tmp_path):
    run = make_run(tmp_path / "grid", parts=("ablation",))
    (run / "ablation" / "ablation.json").rename(run / "ablation.json")  # where `elasticlm ablate --out` puts it
    text = write_report(run).read_text()
    assert "| classic-kd | 3 | 79.5 ± 0.4 | 79.9 ± 0.4 |" in text
    assert "classic-kd: dev +0.3 points, test -0.2 points against the full method (worse on one split, not the " \
           "other)." in text
    assert "block_similarity.png" in text


def test_not_a_run_folder_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    with pytest.raises(ElasticLMError, match="not a run folder"):
        write_report(tmp_path / "empty")
    with pytest.raises(ElasticLMError, match="not a folder"):
        write_report(tmp_path / "nowhere")
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("elasticlm: error: ") and err.count("\n") == 1 and "not a run folder" in err


def test_cli_prints_the_report_path_and_honours_out(tmp_path, capsys):
    run = make_run(tmp_path / "run", parts=("config", "arch", "metrics"))
    assert cli.main(["report", str(run), "--out", str(tmp_path / "docs" / "demo.md")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "docs" / "demo.md")
    text = Path(printed).read_text()
    assert "![the found architecture, layer by layer](demo/architecture.png)" in text
    assert_valid_png(tmp_path / "docs" / "demo" / "architecture.png")
    assert not (run / "report.md").exists()
    with pytest.raises(SystemExit):
        cli.main(["report", "--help"])
    assert "elasticlm report runs/demo" in capsys.readouterr().out


def test_reporting_never_imports_torch(tmp_path):
    run = make_run(tmp_path / "run")
    code = ("import sys; from elasticlm.report import write_report; import elasticlm.commands.report; "
            f"write_report({str(run)!r}); "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_agreement_with_the_teacher_equals_a_naive_count(tmp_path):
    """The report's "follows its teacher" subsection: the found model's seeds' probabilities averaged,
    agreement and who alone is right, overall and per band of teacher confidence, against a plain loop."""
    from elasticlm.report.agreement import agreement

    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 2, n)
    teacher = {"test": rng.normal(0, 2, (n, 2)), "test_labels": labels, "dev": rng.normal(size=(5, 2)),
               "dev_labels": labels[:5]}
    found = [{"test": rng.normal(0, 2, (n, 2)), "test_labels": labels} for _ in range(2)]
    a = agreement(found, teacher)
    t_prob = [np.exp(r) / np.exp(r).sum() for r in teacher["test"]]
    s_pred = [int(np.argmax(sum(np.exp(f["test"][i]) / np.exp(f["test"][i]).sum() for f in found))) for i in range(n)]
    t_pred = [int(np.argmax(p)) for p in t_prob]
    assert a["split"] == "test" and a["seeds"] == 2
    assert a["agree"] == pytest.approx(np.mean([s == t for s, t in zip(s_pred, t_pred)]))
    assert a["teacher_only"] == pytest.approx(np.mean([t == y != s for s, t, y in zip(s_pred, t_pred, labels)]))
    assert a["found_only"] == pytest.approx(np.mean([s == y != t for s, t, y in zip(s_pred, t_pred, labels)]))
    sure = [i for i in range(n) if max(t_prob[i]) >= 0.9]
    top = a["bands"][-1]
    assert (top["from"], top["to"], top["n"]) == (0.9, None, len(sure))
    assert top["found"] == pytest.approx(np.mean([s_pred[i] == labels[i] for i in sure]))
    assert sum(b["n"] for b in a["bands"]) == n
    assert agreement([{"test": rng.normal(size=(n, 1))[:, 0], "test_labels": labels}],
                     {"test": rng.normal(size=n), "test_labels": labels}) is None  # regression values: no table
    root = make_run(tmp_path / "run")
    (root / "predictions").mkdir()
    np.savez(root / "predictions" / "teacher.npz", **teacher)
    for i, f in enumerate(found):
        folder = root / "models" / "found" / ("" if i == 0 else "seed-1")
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "predictions.npz", **f)
    text = write_report(root).read_text()
    assert "### How closely the found model follows its teacher" in text
    assert f"predicts the teacher's class on {100 * a['agree']:.1f}%" in text and "its 2 seeds'" in text
