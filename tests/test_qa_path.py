"""The QA (SQuAD) path through stage-2 fine-tuning, search and retraining, on a tiny synthetic SQuAD
whose words are all in the tiny teacher's vocabulary (`tiny_teacher`, conftest.py): one
`elasticlm run --task squad-v1.1 --data-dir DIR` (module fixture) that the other tests inspect."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import SPECIAL_TOKENS, TEACHER_WORDS, tiny_run_config

from elasticlm import cli
from elasticlm.config import to_dict
from elasticlm.errors import ElasticLMError
from elasticlm.train.supernet import FinetuneConfig

PEOPLE, CITIES = ["bob", "alice", "carol"], ["paris", "london", "rome"]
FACTS = ["the capital of france is paris .", "the capital of england is london .", "the capital of italy is rome .",
         "the film was very good .", "the story was boring ."]
SPACE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "embedding_size": 16,
         "vocab_size": len(SPECIAL_TOKENS) + len(TEACHER_WORDS), "max_position_embeddings": 40,
         "param_ceiling": 15000}


def squad_doc(n: int, rng: random.Random, prefix: str) -> dict:
    """`n` questions ("where lives X ?" / "who lives in Y ?"), several per paragraph; some paragraphs
    are long enough to need several 40-token windows."""
    paragraphs = []
    while sum(len(p["qas"]) for p in paragraphs) < n:
        homes = dict(zip(PEOPLE, rng.sample(CITIES, 3)))
        parts = [f"{who} lives in {city} ." for who, city in homes.items()]
        parts += rng.sample(FACTS, rng.randint(0, 5))
        rng.shuffle(parts)
        context = " ".join(parts)
        qas = []
        for who in rng.sample(PEOPLE, 2):
            sentence = f"{who} lives in {homes[who]} ."
            if rng.random() < 0.5:
                question, answer, at = f"where lives {who} ?", homes[who], context.index(sentence) + len(who) + 10
            else:
                question, answer, at = f"who lives in {homes[who]} ?", who, context.index(sentence)
            assert context[at:at + len(answer)] == answer
            qas.append({"id": f"{prefix}{len(paragraphs)}-{len(qas)}", "question": question,
                        "answers": [{"text": answer, "answer_start": at}]})
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "1.1", "data": [{"title": "homes", "paragraphs": paragraphs}]}


@pytest.fixture(scope="module")
def squad_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("squad")
    rng = random.Random(0)
    (folder / "train-v1.1.json").write_text(json.dumps(squad_doc(80, rng, "t")))
    (folder / "dev-v1.1.json").write_text(json.dumps(squad_doc(16, rng, "d")))
    return folder


def tiny_yaml(tiny_teacher: Path, corpus: Path, path: Path) -> Path:
    """A YAML config of a seconds-scale run (task and data dir come from the command line)."""
    cfg = tiny_run_config(SPACE, pretrain_steps=6, epochs=2.0, teacher_epochs=6.0, search_batch=16,
                          checkpoint_every=50, teacher=str(tiny_teacher), corpus=str(corpus),
                          baselines=["uniform-bert", "uniform-mobile"])
    data = to_dict(cfg)
    for key in ("task", "data_dir"):
        data.pop(key)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def run(tiny_teacher, squad_dir, tmp_path_factory):
    """`elasticlm run --task squad-v1.1 --data-dir DIR` at tiny scale, with stage 2's tasks recorded."""
    import elasticlm.train.supernet_stages as stages

    work = tmp_path_factory.mktemp("qa-run")
    corpus = work / "corpus.txt"
    rng = random.Random(1)
    corpus.write_text("\n".join(" ".join(rng.choice(TEACHER_WORDS) for _ in range(rng.randint(5, 15)))
                                for _ in range(120)))
    config = tiny_yaml(tiny_teacher, corpus, work / "qa.yaml")
    seen = {}

    class Recording(stages.TaskDistill):
        def __init__(self, net, proj, tasks, cfg, dist):
            seen["tasks"] = tasks
            super().__init__(net, proj, tasks, cfg, dist)

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setenv("ELASTICLM_CACHE", str(work / "cache"))
        mp.setattr(stages, "TaskDistill", Recording)
        out = work / "run"
        assert cli.main(["run", str(config), "--task", "squad-v1.1", "--data-dir", str(squad_dir),
                         "--out", str(out)]) == 0
    seen["printed"] = printed.getvalue()
    return out, seen


def test_run_end_to_end_writes_arch_and_the_retrained_models_f1(run):
    out, seen = run
    for baseline in ("majority-class", "TF-IDF + logistic regression"):
        assert f"note: the {baseline} baseline is skipped for squad-v1.1" in seen["printed"]
    assert (out / "export" / "config.json").exists() and (out / "report.md").exists()
    assert (out / "arch.json").exists() and (out / "search" / "result.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["found", "uniform-bert", "uniform-mobile", "teacher"]  # no majority, no TF-IDF for QA
    teacher = json.loads((Path(json.loads((out / "supernet-ft" / "config.json").read_text())["task_teachers"]
                               ["squad-v1.1"]) / "metrics.json").read_text())
    for name in ("found", "uniform-mobile", "uniform-bert", "teacher"):
        assert set(metrics[name]["dev"]) == {"exact_match", "f1"}, name  # 0-1 fractions like every metric
        assert 0.0 <= metrics[name]["dev"]["exact_match"] <= metrics[name]["dev"]["f1"] <= 1.0, name
    assert metrics["teacher"]["dev"]["f1"] == pytest.approx(teacher["dev"]["f1"] / 100)  # official percentages
    assert max(metrics[n]["dev"]["f1"] for n in metrics) > 0
    search = json.loads((out / "search" / "result.json").read_text())
    assert search["metric"] == "f1" and 0.0 <= search["best"]["fitness"] <= 1.0
    stage2 = json.loads((out / "supernet-ft" / "result.json").read_text())["tasks"]["squad-v1.1"]
    assert stage2["metric"] == "f1" and set(stage2["summary"]) == {"heldout", "dev"}
    assert set(stage2["paths"][0]["dev"]) >= {"exact_match", "f1"}



def test_evaluate_command_scores_the_exported_qa_model(run, squad_dir, tmp_path, capsys):
    out, _ = run
    metrics = json.loads((out / "metrics.json").read_text())
    scores = tmp_path / "scores.json"
    assert cli.main(["evaluate", str(out / "export"), "--task", "squad-v1.1", "--data-dir", str(squad_dir),
                     "--json", str(scores)]) == 0
    got = json.loads(scores.read_text())
    assert set(got) == {"dev"} and got["dev"]["f1"] == pytest.approx(metrics["found"]["dev"]["f1"], abs=1e-6)
    assert "squad-v1.1 dev: exact_match" in capsys.readouterr().out

def test_search_split_is_by_example(run, squad_dir):
    from elasticlm.data.squad import load_squad
    from elasticlm.search.search_stages import load_inputs

    out, seen = run
    ids = [ex["id"] for ex in load_squad(squad_dir / "train-v1.1.json")]
    cut = int(0.9 * len(ids))
    trained = seen["tasks"][0].train.with_format(None)["example_id"]
    assert len(trained) > len(set(trained))  # some examples have several windows
    assert set(trained) == set(ids[:cut])  # every window of the first 90%, none of the rest
    inp = load_inputs(out / "supernet-ft", None, str(squad_dir))
    assert [ex["id"] for ex in inp.heldout] == ids[cut:]
    windows = inp.batches(16, "cpu").scorer.index.example_ids
    assert set(windows) == set(ids[cut:]) and len(windows) > len(ids) - cut


def test_qa_fitness_equals_the_extracted_models_f1(run, squad_dir):
    from elasticlm.data import squad
    from elasticlm.data.batching import eval_batches
    from elasticlm.search.evaluator import SupernetFitness
    from elasticlm.search.search_stages import load_inputs
    from elasticlm.space import Architecture
    from elasticlm.train.evaluation import evaluate_model

    out, _ = run
    inp = load_inputs(out / "supernet-ft", "squad-v1.1", str(squad_dir))
    batches = inp.batches(16, "cpu")
    fitness = SupernetFitness(inp.net, inp.task, inp.spec, batches, bf16=False)
    best = json.loads((out / "search" / "result.json").read_text())["best"]
    arch = Architecture.from_list(best["arch"])
    assert fitness([arch])[0] == pytest.approx(best["fitness"], abs=0)  # the search scored the same way
    archs = [arch] + [inp.net.space.sample(random.Random(s), inp.net.widths()) for s in range(2)]
    feats = squad.prepare_features(inp.heldout, inp.tokenizer, max_length=inp.max_length,
                                   stride=squad.window_stride(inp.max_length))
    plain_ds = feats.with_format("torch", columns=["input_ids", "attention_mask", "token_type_ids"])
    for a in archs:
        score = fitness([a])[0]
        model = inp.net.extract(a, head="qa", task=inp.task).eval()
        assert score == pytest.approx(evaluate_model(model, batches, inp.spec, bf16=False)["f1"], abs=0)
        # and equal to a plain pass: unsorted batches of 5, logits padded by hand, the official scoring
        starts = np.full((len(feats), inp.max_length), -1e4, dtype=np.float32)
        ends = starts.copy()
        row = 0
        with torch.no_grad():
            for b in eval_batches(plain_ds, 5, inp.pad_id):
                o = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                          token_type_ids=b["token_type_ids"])
                n, w = o.start_logits.shape
                starts[row:row + n, :w], ends[row:row + n, :w] = o.start_logits.numpy(), o.end_logits.numpy()
                row += n
        answers = squad.postprocess(inp.heldout, feats, starts, ends)
        assert score == pytest.approx(squad.squad_metrics(answers, inp.heldout)["f1"] / 100, abs=1e-12)


def test_the_qa_head_survives_extraction(run, squad_dir, tmp_path):
    from transformers import AutoModelForQuestionAnswering

    from elasticlm.search.search_stages import load_inputs

    out, _ = run
    inp = load_inputs(out / "supernet-ft", None, str(squad_dir))
    b = inp.batches(8, "cpu").batches[0]
    arch = inp.net.space.sample(random.Random(3), inp.net.widths())
    with torch.no_grad():
        h = inp.net(b["input_ids"], arch, attention_mask=b["attention_mask"],
                    token_type_ids=b["token_type_ids"]).last_hidden_state
        want = inp.net.task_logits(inp.task, h, b["attention_mask"])  # B×N×2
        model = inp.net.extract(arch, head="qa", task=inp.task).eval()
        model.save_pretrained(tmp_path / "m")
        again = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "m").eval()
        for m in (model, again):
            o = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"])
            got = torch.stack([o.start_logits, o.end_logits], -1)
            assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert float(want.std()) > 0


def test_qa_distillation_losses_use_real_positions_only():
    from elasticlm.distill.losses import logit_loss
    from elasticlm.kinds import span_loss
    from elasticlm.kinds import qa_logit_loss

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 10, 2, generator=g), torch.randn(3, 10, 2, generator=g)
    mask = torch.zeros(3, 10, dtype=torch.long)
    for i, n in enumerate((10, 6, 6)):
        mask[i, :n] = 1
    got = qa_logit_loss(s, t, mask, kind="relational", temperature=1.0)
    per_row = [logit_loss(s[i:i + 1, :n, j], t[i:i + 1, :n, j]) for i, n in enumerate((10, 6, 6)) for j in (0, 1)]
    assert got == pytest.approx(float(torch.stack(per_row).mean()), abs=1e-6)
    junk = s.clone()
    junk[1:, 6:] = 1e3  # padded positions never count
    assert qa_logit_loss(junk, t, mask, kind="relational", temperature=1.0) == pytest.approx(float(got), abs=1e-6)
    assert qa_logit_loss(t, t, mask, kind="classic", temperature=2.0) == pytest.approx(0.0, abs=1e-6)
    start, end = torch.tensor([1, 2, 0]), torch.tensor([3, 2, 0])
    ce = torch.nn.functional.cross_entropy
    want = 0.5 * (ce(s[..., 0], start) + ce(s[..., 1], end))
    assert span_loss(s, start, end) == pytest.approx(float(want), abs=1e-6)


def test_bad_qa_input_is_a_one_line_error(run, tiny_teacher, squad_dir, tmp_path, capsys, monkeypatch):
    from elasticlm.data import squad

    monkeypatch.setenv("ELASTICLM_CACHE", str(tmp_path / "cache"))
    only_train = tmp_path / "only-train"
    only_train.mkdir()
    (only_train / "train-v1.1.json").write_text((squad_dir / "train-v1.1.json").read_text())
    out = tmp_path / "run"
    assert cli.main(["run", "--task", "squad-v1.1", "--data-dir", str(only_train), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no dev split" in err and "dev-v1.1.json" in err
    assert not out.exists()  # refused before anything ran
    assert cli.main(["run", "--task", "squad-v1.1", "--data-dir", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    # stage 2 refuses a QA task without dev too (called directly, not through the pipeline)
    from elasticlm.train.supernet_stages import finetune

    with pytest.raises(ElasticLMError, match="no dev split"):
        finetune(FinetuneConfig(tasks=["squad-v1.1"], teacher=str(tiny_teacher), data_dir=str(only_train)),
                 run[0] / "supernet", tmp_path / "ft")
    # a window too short for the question
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    examples = squad.load_squad(squad_dir / "dev-v1.1.json")[:2]
    with pytest.raises(ElasticLMError, match="raise max_length") as err:
        squad.prepare_features(examples, tok, max_length=8, stride=2)
    assert "\n" not in str(err.value)


def test_qa_batches_score_oracle_spans_perfectly_v2(tiny_teacher, tmp_path):
    """SQuAD v2.0 through `Batches.for_qa`: peaks at each window's target (CLS for no answer) score
    EM = F1 = 1 with the HasAns/NoAns breakdowns, and the metrics are 0-1 fractions."""
    from transformers import AutoTokenizer

    from elasticlm.data import squad
    from elasticlm.data.tasks import load_task
    from elasticlm.train.evaluation import Batches

    doc = squad_doc(12, random.Random(5), "v")
    for p in doc["data"][0]["paragraphs"]:
        p["qas"][0] = {"id": p["qas"][0]["id"] + "-x", "question": "who lives in italy ?", "answers": [],
                       "is_impossible": True}
    (tmp_path / "dev-v2.0.json").write_text(json.dumps({**doc, "version": "2.0"}))
    data = load_task("squad-v2.0", data_dir=str(tmp_path / "dev-v2.0.json"))
    examples = list(data.splits["dev"])
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    batches = Batches.for_qa(examples, tok, 40, version_2=True, batch_size=4)
    feats = squad.prepare_features(examples, tok, max_length=40, stride=squad.window_stride(40))
    assert batches.scorer.index.example_ids == list(feats["example_id"]) and len(feats) > len(examples)
    oracle = np.full((len(feats), 40, 2), -10.0, dtype=np.float32)
    for f, (s, e) in enumerate(zip(feats["start_positions"], feats["end_positions"])):
        oracle[f, s, 0], oracle[f, e, 1] = 10.0, 10.0
    got = batches.metrics(data.spec, oracle)
    assert got["exact_match"] == got["f1"] == got["HasAns_f1"] == got["NoAns_f1"] == 1.0
    assert not any(k.endswith("total") for k in got)
    oracle[..., 0] = np.roll(oracle[..., 0], 1, axis=1)  # every start one token late
    assert batches.metrics(data.spec, oracle)["exact_match"] < 1.0
