"""Task-teacher fine-tuning on tiny fixtures: a randomly initialised tiny BERT with a hand-written
WordPiece vocabulary (`tiny_teacher`, conftest.py), user-dataset folders of a few dozen rows, and a
tiny SQuAD JSON. Every test uses a temporary `ELASTICLM_CACHE` (`cache`)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from conftest import NEG, POS, user_task, write_csv

from elasticlm.distill.teachers import load_teacher
from elasticlm.errors import ElasticLMError
from elasticlm.kinds import KINDS
from elasticlm.train import teacher_finetune as tf
from elasticlm.train.teacher_finetune import TeacherFinetuneConfig, finetune_dir, finetune_teacher, teacher_train

def _sentiment_row(rng: random.Random) -> list:
    label = rng.randint(0, 1)
    word = rng.choice(POS if label else NEG)
    return [f"the {rng.choice(['movie', 'film', 'plot'])} was very {word} .", label]


def _pair_score_row(rng: random.Random) -> list:
    a, b = rng.choice(POS + NEG), rng.choice(POS + NEG)
    return [f"the film was {a}", f"the plot was {b}", float((a in POS) + (b in POS)) + 0.5]


@pytest.fixture(scope="module")
def sentiment_task(tmp_path_factory) -> Path:
    """A user dataset: 'the movie was <adjective>' → 1 for positive adjectives, 0 for negative."""
    return user_task(tmp_path_factory.mktemp("sentiment"), ["text", "label"], _sentiment_row, 0,
                      {"train": 48, "dev": 16, "test": 16})


@pytest.fixture(scope="module")
def pair_regression_task(tmp_path_factory) -> Path:
    """Sentence pairs with a float score: number of positive words."""
    return user_task(tmp_path_factory.mktemp("pairs"), ["text_a", "text_b", "label"], _pair_score_row, 1,
                      {"train": 40, "dev": 12, "test": 12})


def _cfg(teacher: Path, task: Path, **kw) -> TeacherFinetuneConfig:
    train = dict(max_steps=80, batch_size=8, lr=2e-3, seed=0)
    train.update({k: kw.pop(k) for k in list(kw) if k in train or k == "precision"})
    return TeacherFinetuneConfig(teacher=str(teacher), task=str(task), train=teacher_train(**train), **kw)


def test_classification_end_to_end_and_cache(tiny_teacher, sentiment_task, cache, monkeypatch):
    cfg = _cfg(tiny_teacher, sentiment_task)
    lines: list[str] = []
    res = finetune_teacher(cfg, log=lines.append)
    assert not res.cached and res.path == finetune_dir(cfg)
    assert res.path.parent == cache / "teachers" and res.path.name.startswith("tiny-bert")
    for name in ("config.json", "model.safetensors", "metrics.json", "finetune_config.json",
                 "elasticlm_teacher.json", "tokenizer.json"):
        assert (res.path / name).exists(), name
    m = res.metrics
    assert set(m["dev"]) == {"accuracy", "f1"} and set(m["test"]) == {"accuracy", "f1"}
    assert m["steps"] == 80 and m["main_metric"] == "accuracy"
    assert m["test"]["accuracy"] >= 0.75, m  # the task is one word away from trivial
    assert any(line.startswith("step 80/80") for line in lines) and any("saved" in x for x in lines)
    assert json.loads((res.path / "finetune_config.json").read_text())["train"]["lr"] == cfg.train.lr

    # the same config again: straight from the cache, no data loading, no training
    monkeypatch.setattr("elasticlm.data.tasks.load_task", lambda *a, **k: pytest.fail("retrained"))
    again = finetune_teacher(cfg, progress=False)
    assert again.cached and again.path == res.path and again.metrics == m

    # it loads as a teacher with a classification head
    t = load_teacher(str(res.path), task_kinds=KINDS.values())
    assert t.task_head == "classification" and t.kind == "encoder" and not t.has_lm_head
    assert t.task_info["task"] == m["task"] and t.task_info["num_labels"] == 2
    enc = t.tokenizer(["the movie was very good .", "the film was very awful ."], padding=True, return_tensors="pt")
    out = t(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert out.logits.shape == (2, 2) and len(out.hidden_states) == 3 and len(out.attentions) == 2
    assert out.logits.argmax(-1).tolist() == [1, 0]


def test_regression_on_pairs(tiny_teacher, pair_regression_task, cache):
    res = finetune_teacher(_cfg(tiny_teacher, pair_regression_task, max_steps=10, precision="fp32"),
                           progress=False)
    assert set(res.metrics["dev"]) == {"pearson", "spearman"} and res.metrics["kind"] == "regression"
    t = load_teacher(str(res.path), task_kinds=KINDS.values(), dtype="fp32")
    assert t.task_head == "regression"
    assert load_teacher(str(res.path), dtype="fp32").task_head is None  # no task kinds given: the bare encoder
    enc = t.tokenizer(["the film was good"], ["the plot was bad"], return_tensors="pt")
    assert t(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits.shape == (1, 1)


def test_cache_key_follows_config(tiny_teacher, sentiment_task, cache):
    a = finetune_dir(_cfg(tiny_teacher, sentiment_task))
    assert a == finetune_dir(_cfg(tiny_teacher, sentiment_task))
    assert a != finetune_dir(_cfg(tiny_teacher, sentiment_task, lr=1e-3))
    assert a != finetune_dir(_cfg(tiny_teacher, sentiment_task, seed=1))


def _cache_entries(root: Path) -> list[Path]:
    teachers = root / "teachers"
    return list(teachers.iterdir()) if teachers.exists() else []


def test_failed_training_leaves_nothing(tiny_teacher, sentiment_task, cache, monkeypatch):
    calls = {"n": 0}
    real_loss = tf._task_loss

    def failing_loss(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
        return real_loss(*args)

    monkeypatch.setattr(tf, "_task_loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        finetune_teacher(_cfg(tiny_teacher, sentiment_task), progress=False)
    assert _cache_entries(cache) == []


def test_failed_save_leaves_nothing(tiny_teacher, sentiment_task, cache, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    def broken_save(self, folder, *a, **k):
        (Path(folder) / "partial.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", broken_save)
    cfg = _cfg(tiny_teacher, sentiment_task, max_steps=2)
    with pytest.raises(OSError, match="disk full"):
        finetune_teacher(cfg, progress=False)
    assert _cache_entries(cache) == [] and not finetune_dir(cfg).exists()


def test_bad_config_names_field(tiny_teacher, sentiment_task, cache):
    with pytest.raises(ElasticLMError, match="batch_size"):
        finetune_teacher(_cfg(tiny_teacher, sentiment_task, batch_size=0))
    with pytest.raises(ElasticLMError, match="unknown task"):
        finetune_teacher(_cfg(tiny_teacher, "no-such-task"))
    assert _cache_entries(cache) == []


def test_cli_finetune(tiny_teacher, sentiment_task, cache, capsys):
    from elasticlm.cli import main

    argv = ["teacher", "finetune", "--teacher", str(tiny_teacher), "--task", str(sentiment_task),
            "--max-steps", "4", "--batch-size", "8", "--lr", "1e-3", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dev: accuracy" in out and "test: accuracy" in out and "saved to" in out
    assert main(argv) == 0
    assert "cached" in capsys.readouterr().out
    assert main(["teacher", "show", str(next((cache / "teachers").iterdir()))]) == 0
    assert "classification head" in capsys.readouterr().out


# --- QA -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory) -> Path:
    """A tiny SQuAD v1.1 folder: 'Where does X live? X lives in CITY.'"""
    folder = tmp_path_factory.mktemp("squad")
    rng = random.Random(2)

    def doc(n, prefix):
        paragraphs = []
        for i in range(n):
            who, city = rng.choice(["bob", "alice", "carol"]), rng.choice(["paris", "london", "rome"])
            context = f"the film was good . {who} lives in {city} . the plot was bad ."
            start = context.index(city)
            paragraphs.append({"context": context, "qas": [{
                "id": f"{prefix}{i}", "question": f"where lives {who} ?",
                "answers": [{"text": city, "answer_start": start}]}]})
        return {"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}

    (folder / "train-v1.1.json").write_text(json.dumps(doc(24, "tr")))
    (folder / "dev-v1.1.json").write_text(json.dumps(doc(8, "dv")))
    return folder


def test_qa_smoke(tiny_teacher, squad_dir, cache):
    cfg = TeacherFinetuneConfig(teacher=str(tiny_teacher), task="squad-v1.1", data_dir=str(squad_dir),
                                train=teacher_train(max_steps=6, batch_size=8, lr=1e-3), max_length=32, doc_stride=8)
    res = finetune_teacher(cfg, progress=False)
    dev = res.metrics["dev"]
    assert {"exact_match", "f1"} <= set(dev) and 0 <= dev["f1"] <= 100
    t = load_teacher(str(res.path), task_kinds=KINDS.values())
    assert t.task_head == "qa"
    enc = t.tokenizer(["where lives bob ?"], ["bob lives in rome ."], return_tensors="pt")
    out = t(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    assert out.logits.shape == (1, enc["input_ids"].shape[1], 2)


def test_cache_key_spellings(cache):
    """A hub id and its offline alias, or two spellings of a task, name the same cached teacher."""
    a = finetune_dir(TeacherFinetuneConfig(teacher="all-minilm-l6-v2", task="sst-2"))
    b = finetune_dir(TeacherFinetuneConfig(teacher="sentence-transformers/all-MiniLM-L6-v2", task="SST2"))
    assert a == b and a.name.startswith("all-minilm-l6-v2--sst-2--")


def test_cache_key_of_teachers_cached_before_the_train_field(cache):
    """The training settings moved into `train` (a `TrainConfig`) hash as the flat fields they were, so
    teachers cached before are found again (names computed with the flat config); a setting the flat
    config had no field for changes the key only when set."""
    assert finetune_dir(TeacherFinetuneConfig()).name == "all-minilm-l6-v2--rt-polarity--f723ca046b"
    cfg = TeacherFinetuneConfig(teacher="all-mpnet-base-v2", task="sst-2",
                                train=teacher_train(epochs=3, lr=3e-5, precision="fp32", seed=2, batch_size=16,
                                                    warmup_ratio=0.06, weight_decay=0.0))
    assert finetune_dir(cfg).name == "all-mpnet-base-v2--sst-2--ca44e4dfd3"
    accumulated = TeacherFinetuneConfig(train=teacher_train(grad_accum=2))
    assert finetune_dir(accumulated) != finetune_dir(TeacherFinetuneConfig())


def test_editing_the_data_folder_fine_tunes_again(tiny_teacher, sentiment_task, tmp_path, cache):
    """The key holds each data file's size and mtime: flipping every label is a new teacher, not the
    stale cached one; the same for a GLUE data_dir."""
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(sentiment_task, folder)
    before = finetune_dir(_cfg(tiny_teacher, folder))
    assert finetune_dir(_cfg(tiny_teacher, folder)) == before  # stable
    first = finetune_teacher(_cfg(tiny_teacher, folder, max_steps=2), progress=False)
    rows = list(csv.reader(open(folder / "train.csv")))
    flipped = [rows[0]] + [[text, str(1 - int(label))] for text, label in rows[1:]]
    with open(folder / "train.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(flipped)
    assert finetune_dir(_cfg(tiny_teacher, folder)) != before
    second = finetune_teacher(_cfg(tiny_teacher, folder, max_steps=2), progress=False)
    assert not second.cached and second.path != first.path and first.path.exists()

    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("sentence\tlabel\ngood\t1\n")
    cfg = TeacherFinetuneConfig(teacher=str(tiny_teacher), task="sst-2", data_dir=str(glue.parent))
    key = finetune_dir(cfg)
    (glue / "train.tsv").write_text("sentence\tlabel\nbad\t0\n")
    assert finetune_dir(cfg) != key


def test_no_labelled_evaluation_split_is_said_before_training(tiny_teacher, tmp_path, cache):
    folder = tmp_path / "nodev"
    folder.mkdir()
    write_csv(folder / "train.csv", ["text", "label"], [["the movie was good", 1], ["the film was bad", 0]] * 8)
    write_csv(folder / "test.csv", ["text"], [["the plot was fine"], ["the story was poor"]])
    lines: list[str] = []
    res = finetune_teacher(_cfg(tiny_teacher, folder, max_steps=2), log=lines.append)
    warned = [i for i, line in enumerate(lines) if "measures nothing" in line]
    trained = [i for i, line in enumerate(lines) if line.startswith("step ")]
    assert warned and trained and warned[0] < trained[0]
    assert "dev" not in res.metrics and "test" not in res.metrics
