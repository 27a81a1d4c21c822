"""SQuAD: the official JSON (v1.1 and v2.0), windowed features and post-processing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from elasticlm.data.squad import load_squad, postprocess, prepare_features, squad_metrics
from elasticlm.data.tasks import load_task
from elasticlm.errors import ElasticLMError

CONTEXT = ("Super Bowl 50 was an American football game to determine the champion of the National "
           "Football League for the 2015 season. The American Football Conference champion Denver Broncos "
           "defeated the National Football Conference champion Carolina Panthers to earn their third "
           "Super Bowl title. The game was played on February 7, 2016, at Levi's Stadium in Santa Clara, California.")


def squad_json(version: str) -> dict:
    def qa(qid: str, question: str, answer: str | None) -> dict:
        if answer is None:
            return {"id": qid, "question": question, "answers": [], "is_impossible": True,
                    "plausible_answers": [{"text": "Denver", "answer_start": CONTEXT.index("Denver")}]}
        entry = {"id": qid, "question": question,
                 "answers": [{"text": answer, "answer_start": CONTEXT.index(answer)}]}
        return {**entry, "is_impossible": False} if version == "2.0" else entry

    qas = [qa("q1", "Which team won Super Bowl 50?", "Denver Broncos"),
           qa("q2", "Where was the game played?", "Santa Clara, California"),
           qa("q3", "When was the game played?", "February 7, 2016")]
    if version == "2.0":
        qas.append(qa("q4", "Which team lost Super Bowl 49?", None))
    return {"version": version, "data": [{"title": "Super_Bowl_50", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}


@pytest.fixture
def tokenizer(tiny_tokenizer):
    """A WordPiece tokenizer whose vocabulary holds every word of the fixture (lower-cased)."""
    words = set(re.findall(r"\w+|[^\w\s]", (CONTEXT + " Which team won lost Super Bowl 49 50? Where When was "
                                            "the game played").lower()))
    return tiny_tokenizer(sorted(words))


def test_load_v1_and_v2(tmp_path: Path) -> None:
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(squad_json("1.1")))
    v1 = load_squad(tmp_path / "dev-v1.1.json")
    assert [e["id"] for e in v1] == ["q1", "q2", "q3"]
    assert v1[0]["answers"] == {"text": ["Denver Broncos"], "answer_start": [CONTEXT.index("Denver Broncos")]}
    assert v1[0]["title"] == "Super_Bowl_50" and not v1[0]["is_impossible"]
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2/train-v2.0.json").write_text(json.dumps(squad_json("2.0")))
    (tmp_path / "v2/dev-v2.0.json").write_text(json.dumps(squad_json("2.0")))
    task = load_task("SQuAD-v2.0", data_dir=str(tmp_path / "v2"))
    assert task.spec.kind == "qa" and set(task.splits) == {"train", "dev"}
    assert task.splits["dev"]["is_impossible"] == [False, False, False, True]
    assert task.splits["dev"][3]["answers"]["text"] == []
    single = load_task("squad-v1.1", data_dir=str(tmp_path / "dev-v1.1.json"))
    assert list(single.splits) == ["dev"] and len(single.splits["dev"]) == 3


def test_bad_squad_files(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"version": "1.1"}')
    with pytest.raises(ElasticLMError, match=r"a.json: missing field 'data'"):
        load_squad(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "1"}]}]}]}')
    with pytest.raises(ElasticLMError, match=r"b.json: missing field 'data\[0\].paragraphs\[0\].qas\[0\].question'"):
        load_squad(tmp_path / "b.json")
    (tmp_path / "c.json").write_text('{"data": [')
    with pytest.raises(ElasticLMError, match=r"c.json: not valid JSON"):
        load_squad(tmp_path / "c.json")
    with pytest.raises(ElasticLMError, match=r"pass --data-dir with train-v1.1.json"):
        load_task("squad-v1.1")


def test_windows_targets_and_postprocess_roundtrip(tmp_path: Path, tokenizer) -> None:
    (tmp_path / "dev.json").write_text(json.dumps(squad_json("2.0")))
    examples = load_squad(tmp_path / "dev.json")
    feats = prepare_features(examples, tokenizer, max_length=48, stride=16)
    assert len(feats) > len(examples)  # the context needs several windows
    assert all(len(ids) == 48 for ids in feats["input_ids"])
    windows_per_example = {e["id"]: feats["example_id"].count(e["id"]) for e in examples}
    assert min(windows_per_example.values()) >= 2
    # every answerable example has at least one window whose target span decodes to its answer
    for e in examples:
        rows = [f for f, eid in enumerate(feats["example_id"]) if eid == e["id"]]
        spans = [(feats["start_positions"][f], feats["end_positions"][f], f) for f in rows]
        hits = [(s, t, f) for s, t, f in spans if s > 0]
        if e["is_impossible"]:
            assert not hits  # no-answer -> CLS everywhere
            continue
        assert hits
        s, t, f = hits[0]
        offsets = feats["offset_mapping"][f]
        assert e["context"][offsets[s][0]:offsets[t][1]] == e["answers"]["text"][0]

    # oracle logits: a peak at each window's target (CLS for windows without the answer)
    n, length = len(feats), 48
    start_logits = np.full((n, length), -10.0)
    end_logits = np.full((n, length), -10.0)
    for f in range(n):
        start_logits[f, feats["start_positions"][f]] = 10.0
        end_logits[f, feats["end_positions"][f]] = 10.0
    preds = postprocess(examples, feats, start_logits, end_logits, version_2=True)
    assert preds == {"q1": "Denver Broncos", "q2": "Santa Clara, California", "q3": "February 7, 2016", "q4": ""}
    assert squad_metrics(preds, examples, version_2=True)["exact_match"] == pytest.approx(100.0)
    # v1.1-style: never answer "", the best span wins even where [CLS] scores higher
    preds_v1 = postprocess(examples, feats, start_logits, end_logits, version_2=False)
    assert preds_v1["q1"] == "Denver Broncos" and preds_v1["q4"] != ""
