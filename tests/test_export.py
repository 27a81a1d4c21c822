"""Export: the folder loads with only torch and transformers (a subprocess that cannot import elasticlm)
and gives the library model's logits; pipeline() works there; ONNX parity; int8 is measured; the model
card carries metadata, the per-layer architecture and the run's metrics; bad sources are one-line
errors; `import elasticlm` alone lets the Auto classes load a saved model (without importing torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import STAGE_WORDS
from elasticlm import cli
from elasticlm.errors import ElasticLMError
from elasticlm.export import export_model
from elasticlm.models import ElasticLMConfig, ElasticLMForCausalLM, ElasticLMForSequenceClassification
from elasticlm.space import Architecture, SearchSpace

pytest.importorskip("onnxruntime")

ARCH = Architecture.from_list([
    {"kind": "bert", "sharing": "none", "ffn_dim": 48, "heads": 4},
    {"kind": "mobile", "sharing": "qv", "ffn_dim": 24, "heads": 2},
    {"kind": "bert", "sharing": "kv", "ffn_dim": 96, "heads": 6},
])
LABELS = {0: "negative", 1: "positive"}
TEXTS = ["the movie was very good .", "bad plot", "alice and bob in the city of the film , very poor acting .", "fine"]


def _space(vocab_size: int) -> SearchSpace:
    return SearchSpace(hidden_size=48, num_layers=3, num_heads=12, embedding_size=16, vocab_size=vocab_size,
                       max_position_embeddings=64)


def _save(folder: Path, model, tokenizer) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_tokenizer):
    return tiny_tokenizer(STAGE_WORDS)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tokenizer, sentiment) -> Path:
    """A run folder: models/found (a classifier whose weights file also holds a trainer tensor),
    run_config.json naming the sentiment task, metrics.json."""
    run = tmp_path_factory.mktemp("run")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = ElasticLMConfig.from_space(_space(len(tokenizer)), ARCH, num_labels=2, id2label=LABELS,
                                         label2id={v: k for k, v in LABELS.items()})
        model = ElasticLMForSequenceClassification(cfg)
    found = _save(run / "models" / "found", model, tokenizer)
    weights = load_file(found / "model.safetensors")
    weights["hidden_projection.0.weight"] = torch.zeros(48, 32)  # trainer state that must not travel
    save_file(weights, found / "model.safetensors", metadata={"format": "pt"})
    (run / "run_config.json").write_text(json.dumps({"preset": "demo", "task": str(sentiment), "teacher": "tiny",
                                                     "corpus": "demo", "seed": 0, "retrain": {"max_length": 32}}))
    metrics = {"found": {"params": 37000, "latency_ms": 1.5, "dev": {"accuracy": 0.71}, "test": {"accuracy": 0.68}},
               "teacher": {"params": 90000, "latency_ms": 3.0, "dev": {"accuracy": 0.9}, "test": {"accuracy": 0.88}},
               "majority": {"params": 0, "latency_ms": 0.0, "dev": {"accuracy": 0.5}, "test": {"accuracy": 0.5}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "search").mkdir()
    (run / "search" / "result.json").write_text(json.dumps({"best": {}, "evaluated": 57, "seconds": 12.5}))
    (run / "heads").mkdir()
    (run / "heads" / "heads.json").write_text(json.dumps({"eta": 0.9, "layers": [
        {"layer": i, "kind": c.kind, "width": 48, "heads_before": 12, "kept": [], "heads_after": c.heads}
        for i, c in enumerate(ARCH)]}))
    return run


REGISTRATION = textwrap.dedent("""
    import sys
    import elasticlm
    assert "torch" not in sys.modules and "transformers" not in sys.modules
    from transformers import AutoConfig, AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1])
    print(type(model).__module__, type(AutoConfig.for_model("elasticlm")).__name__)
""")


@pytest.fixture(scope="module")
def registration(run_dir, tmp_path_factory):
    """A subprocess (started early, so it overlaps the exports) where `import elasticlm` alone lets
    AutoModelForSequenceClassification load a saved model."""
    proc = subprocess.Popen([sys.executable, "-c", REGISTRATION, str(run_dir / "models" / "found")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path_factory.mktemp("registration"), env={**os.environ, "HF_HUB_OFFLINE": "1"})
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def run_export(run_dir, registration, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "run"
    said: list[str] = []
    result = export_model(run_dir, out, int8=True, say=said.append)
    return out, result, said


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory, tokenizer) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = ElasticLMForCausalLM(ElasticLMConfig.from_space(_space(len(tokenizer)), ARCH))
    return _save(tmp_path_factory.mktemp("causal"), model, tokenizer)


@pytest.fixture(scope="module")
def causal_export(causal_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "causal"
    return out, export_model(causal_dir, out, int8=True, say=lambda s: None)


def _batch(tokenizer, texts=TEXTS) -> dict[str, np.ndarray]:
    enc = tokenizer(texts, padding=True, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def _library_logits(cls, folder, batch) -> np.ndarray:
    model = cls.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()


CHILD = textwrap.dedent("""
    import json, sys
    sys.path.append(sys.argv.pop(1))  # site-packages, without its .pth files
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, pipeline
    cls_dir, causal_dir, inputs, result = sys.argv[1:5]
    try:
        import elasticlm
        found = elasticlm.__file__
    except ImportError:
        found = None
    batch = {k: torch.from_numpy(v) for k, v in np.load(inputs).items()}
    cls = AutoModelForSequenceClassification.from_pretrained(cls_dir, trust_remote_code=True).eval()
    lm = AutoModelForCausalLM.from_pretrained(causal_dir, trust_remote_code=True).eval()
    with torch.no_grad():
        cls_logits = cls(**batch).logits.numpy()
        lm_logits = lm(**batch).logits.numpy()
    pipe = pipeline("text-classification", model=cls_dir, trust_remote_code=True)
    preds = pipe(["the movie was very good .", "bad plot"])
    np.savez(result + ".npz", cls=cls_logits, lm=lm_logits)
    json.dump({"elasticlm": found, "preds": preds, "cls_module": type(cls).__module__,
               "id2label": cls.config.id2label}, open(result, "w"))
""")


def test_export_loads_without_elasticlm(run_dir, run_export, causal_dir, causal_export, tokenizer, tmp_path):
    """A fresh interpreter with only site-packages' torch/transformers (no elasticlm: no editable-install
    hook, cwd and PYTHONPATH outside the repository) loads both exports and gives the same logits."""
    (cls_out, _, _), (lm_out, _) = run_export, causal_export
    batch = _batch(tokenizer)
    np.savez(tmp_path / "inputs.npz", **batch)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    site = sysconfig.get_paths()["purelib"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "HF_MODULES_CACHE": str(tmp_path / "hf-modules"), "TOKENIZERS_PARALLELISM": "false"}
    # -I: no PYTHON* variables, no script/cwd on sys.path; -S: no .pth files (elasticlm's editable finder)
    cmd = [sys.executable, "-I", "-S", str(script), site, str(cls_out), str(lm_out), str(tmp_path / "inputs.npz"), str(tmp_path / "result.json")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads((tmp_path / "result.json").read_text())
    assert child["elasticlm"] is None  # the child really could not import elasticlm
    assert "elasticlm.models" not in child["cls_module"]
    got = np.load(tmp_path / "result.json.npz")
    want_cls = _library_logits(ElasticLMForSequenceClassification, run_dir / "models" / "found", batch)
    want_lm = _library_logits(ElasticLMForCausalLM, causal_dir, batch)
    torch.testing.assert_close(torch.from_numpy(got["cls"]), torch.from_numpy(want_cls))
    torch.testing.assert_close(torch.from_numpy(got["lm"]), torch.from_numpy(want_lm))
    assert {int(k): v for k, v in child["id2label"].items()} == LABELS
    assert [p["label"] for p in child["preds"]] == [LABELS[int(i)] for i in want_cls[:2].argmax(-1)]


def test_export_folder_holds_model_code_tokenizer_and_no_trainer_state(run_export, run_dir):
    from transformers.dynamic_module_utils import get_imports

    out, result, said = run_export
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "export.json", "model.onnx", "model.int8.onnx",
            "modeling_elasticlm.py", "tokenizer_config.json"} <= names
    assert not any(n.startswith(".") or n in ("metrics.jsonl", "result.json", "run_config.json") for n in names)
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"] == \
        "modeling_elasticlm.ElasticLMForSequenceClassification"
    assert config["auto_map"]["AutoConfig"] == "modeling_elasticlm.ElasticLMConfig"
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["label2id"]["positive"] == 1
    for code in out.glob("*.py"):
        assert "elasticlm" not in get_imports(code), code.name
        assert "AutoConfig.register" not in code.read_text()
    keys = set(load_file(out / "model.safetensors"))
    assert not any("projection" in k for k in keys)
    assert keys == set(ElasticLMForSequenceClassification.from_pretrained(out).state_dict())
    assert any("hidden_projection.0.weight" in s for s in said)  # the dropped trainer tensor is reported
    assert json.loads((out / "export.json").read_text()) == result
    # the code is today's source: a whole class body of the library appears verbatim
    import inspect

    assert inspect.getsource(ElasticLMForSequenceClassification) in (out / "modeling_elasticlm.py").read_text()


def test_onnx_parity_with_dynamic_batch_and_sequence(run_export, causal_export, tokenizer):
    from elasticlm.export.onnx import max_abs_diff, session

    for out, result in ((run_export[0], run_export[1]), causal_export):
        assert result["onnx"]["max_abs_diff"] <= 1e-4
        cls = ElasticLMForSequenceClassification if result["class"].endswith("Classification") else ElasticLMForCausalLM
        model = cls.from_pretrained(out).eval()
        sess = session(out / "model.onnx")
        for texts in (TEXTS[:1], TEXTS * 3):  # other batch sizes and lengths than the export's check
            batch = _batch(tokenizer, texts)
            assert max_abs_diff(sess, model, batch, ["logits"]) <= 1e-4


def test_int8_is_measured_on_dev_or_by_agreement(run_export, causal_export):
    q = run_export[1]["int8"]
    assert "dev" in q["on"] and "accuracy" in q["change"] and set(q["change"]) == set(q["fp32"]) == set(q["int8"])
    assert q["change"]["accuracy"] == pytest.approx(q["int8"]["accuracy"] - q["fp32"]["accuracy"])
    assert 0 <= q["fp32"]["accuracy"] <= 1 and 0 <= q["argmax_agreement"] <= 1
    for s in q["speed"].values():
        assert s["fp32_ms"] > 0 and s["int8_ms"] > 0 and s["speedup"] == pytest.approx(s["fp32_ms"] / s["int8_ms"], rel=0.01)
    assert any("int8:" in line and "dev accuracy" in line for line in run_export[2])
    lm = causal_export[1]["int8"]
    assert "sample sentences" in lm["on"] and 0 <= lm["argmax_agreement"] <= 1 and "change" not in lm


def test_model_card(run_export, causal_export):
    import yaml

    text = (run_export[0] / "README.md").read_text()
    assert text.startswith("---\n")
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["license"] and "elasticlm" in meta["tags"] and meta["metrics"] == ["accuracy"]
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    assert len(rows) == len(ARCH) and "| 1 | mobile | qv | 24 | 2 |" in rows[1]
    d = int(text.split("hidden size d = ")[1].split()[0])
    assert f"(attention width i = d/4 = {d // 4})" in text  # the mobile bottleneck, `SearchSpace.inner_size`
    assert "| **found** (this model) | 0.04M | 1.5 | 71.0 | 68.0 |" in text
    assert "is below: teacher (88.0)" in text and "majority" in text
    assert "preset `demo`" in text and "trust_remote_code=True" in text and "1 = `positive`" in text
    assert "int8" in text and "speed-up" in text
    assert "scored 57 distinct architectures in 12 s" in text and "kept 12 of 36 attention heads" in text
    lm = (causal_export[0] / "README.md").read_text()
    assert "pipeline_tag: text-generation" in lm and "No evaluation results" in lm


def test_bad_sources_are_one_line_errors(tmp_path, capsys, run_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no model here")
    assert cli.main(["export", str(empty), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(empty) in err and "expected a model folder" in err
    assert not (tmp_path / "x").exists()
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert cli.main(["export", str(bert), "--out", str(tmp_path / "x")]) == 2
    assert "not 'elasticlm'" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert cli.main(["export", str(run_dir), "--out", str(busy)]) == 2
    assert "--force" in capsys.readouterr().err and (busy / "keep.txt").exists()
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((run_dir / "models" / "found" / name).read_bytes())
    assert cli.main(["export", str(bare), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no tokenizer beside the model" in err and not (tmp_path / "x").exists()
    with pytest.raises(ElasticLMError, match="is \\(or holds\\) the model"):
        export_model(run_dir, run_dir, force=True)


def test_cli_export_prints_how_to_load(run_dir, tmp_path, capsys):
    out = tmp_path / "cli-export"
    assert cli.main(["export", str(run_dir / "models" / "found"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AutoModelForSequenceClassification.from_pretrained" in printed
    assert (out / "config.json").exists() and not (out / "model.onnx").exists()
    assert "onnx" not in json.loads((out / "export.json").read_text())


def test_import_elasticlm_registers_auto_classes_without_torch(registration):
    out, err = registration.communicate(timeout=300)
    assert registration.returncode == 0, err[-3000:]
    assert out.split() == ["elasticlm.models.modeling", "ElasticLMConfig"]


@pytest.mark.parametrize("head", ["mlm", "qa", "base"])
def test_every_head_exports_with_onnx(head, tokenizer, tmp_path):
    """Masked LM, QA and the bare encoder export too: the export reloads them from its own code and
    checks ONNX parity (per-token outputs at the real tokens) before it writes the folder."""
    from transformers import AutoConfig

    from elasticlm.models import HEADS

    with torch.random.fork_rng():
        torch.manual_seed(2)
        model = HEADS[head](ElasticLMConfig.from_space(_space(len(tokenizer)), ARCH))
    src = _save(tmp_path / "src", model, tokenizer)
    result = export_model(src, tmp_path / "out", onnx=True, say=lambda s: None)
    assert result["class"] == type(model).__name__ and result["onnx"]["max_abs_diff"] <= 1e-4
    assert result["reload_max_abs_diff"] <= 1e-5
    auto = json.loads((tmp_path / "out" / "config.json").read_text())["auto_map"][result["auto_class"]]
    assert auto == f"modeling_elasticlm.{type(model).__name__}"
    assert AutoConfig.from_pretrained(tmp_path / "out").model_type == "elasticlm"


def test_export_modules_import_one_way():
    """hf (the folder and its checks) sits on top: quality, onnx, card and source never import it,
    and no two export modules import each other."""
    import ast
    import graphlib

    folder = Path(__file__).resolve().parent.parent / "elasticlm" / "export"
    graph = {}
    for path in folder.glob("*.py"):
        found = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
        graph[path.stem] = {m.rsplit(".", 1)[1] for m in found if m and m.startswith("elasticlm.export.")}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert order.index("hf") > max(order.index(m) for m in ("quality", "onnx", "card", "source"))
    assert not any("hf" in deps for name, deps in graph.items() if name != "__init__")
