"""Task kinds (`elasticlm.kinds`): each built-in kind's label count, loss (against a naive reference) and
scoring; and a toy fourth kind — token tagging, defined here as one class plus one registration line —
that trains and evaluates through retraining without any other library change."""

from __future__ import annotations

import random

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elasticlm.data.spec import TaskSpec
from elasticlm.distill.losses import DistillConfig
from elasticlm.errors import ElasticLMError
from elasticlm.kinds import KINDS, Classification, QASplit, Regression, SpanQA, TaskKind, kind_named, kind_of, register
from elasticlm.models.modeling import ElasticLMModel, ElasticLMPreTrainedModel
from elasticlm.train.engine import TrainConfig
from elasticlm.train.retrain import RetrainConfig, RetrainData, build_model, retrain_model, scratch_net

SENTIMENT = TaskSpec("toy-sent", "classification", ("text_a",), ("neg", "neu", "pos"), ("accuracy", "macro_f1"),
                     "accuracy")
RATING = TaskSpec("toy-rating", "regression", ("text_a",), None, ("pearson", "spearman"), "pearson")
SQUAD = TaskSpec("squad-v1.1", "qa", ("question", "context"), None, ("exact_match", "f1"), "f1")


def test_registry_maps_names_to_kinds_and_rejects_unknown_ones():
    assert [type(kind_named(n)) for n in ("classification", "regression", "qa")] == [Classification, Regression, SpanQA]
    assert kind_of(SQUAD) is KINDS["qa"]
    with pytest.raises(ElasticLMError, match="unknown task kind 'ner'"):
        kind_named("ner")
    with pytest.raises(ElasticLMError, match="unknown task kind"):
        kind_of(TaskSpec("x", "ner", ("text_a",), None, ("accuracy",), "accuracy"))


def test_classification_kind():
    kind, gen = kind_of(SENTIMENT), torch.Generator().manual_seed(0)
    assert kind.num_labels(SENTIMENT) == 3 and kind.classes and kind.label_dtype == "int64"
    logits, labels = torch.randn(5, 3, generator=gen), torch.tensor([0, 2, 1, 1, 0])
    naive = -torch.stack([logits[i].log_softmax(-1)[labels[i]] for i in range(5)]).mean()
    assert float(kind.loss(logits, {"labels": labels})) == pytest.approx(float(naive), abs=1e-6)
    # teacher-labelled augmented rows (-100) carry no task loss; a batch of only those gives 0, not NaN
    mixed = torch.tensor([0, -100, 1, -100, 0])
    naive = -torch.stack([logits[i].log_softmax(-1)[mixed[i]] for i in (0, 2, 4)]).mean()
    assert float(kind.loss(logits, {"labels": mixed})) == pytest.approx(float(naive), abs=1e-6)
    unlabelled = logits.clone().requires_grad_()
    none = kind.loss(unlabelled, {"labels": torch.full((5,), -100)})
    none.backward()
    assert float(none) == 0.0 and torch.equal(unlabelled.grad, torch.zeros(5, 3))
    preds = np.eye(3)[[0, 2, 1, 0]]  # logits arg-maxing to 0, 2, 1, 0
    assert kind.metrics(SENTIMENT, preds, np.array([0, 2, 1, 1]), None)["accuracy"] == pytest.approx(0.75)


def test_regression_kind():
    kind, gen = kind_of(RATING), torch.Generator().manual_seed(1)
    assert kind.num_labels(RATING) == 1 and not kind.classes and kind.label_dtype == "float32"
    logits, labels = torch.randn(6, 1, generator=gen), torch.randn(6, generator=gen)
    naive = sum((logits[i, 0] - labels[i]) ** 2 for i in range(6)) / 6
    assert float(kind.loss(logits, {"labels": labels})) == pytest.approx(float(naive), abs=1e-6)
    got = kind.metrics(RATING, np.array([[1.0], [2.0], [3.0], [5.0]]), np.array([0.1, 0.2, 0.3, 0.4]), None)
    assert got["spearman"] == pytest.approx(1.0) and 0.9 < got["pearson"] < 1.0


def test_span_qa_kind(tiny_tokenizer):
    kind, gen = kind_of(SQUAD), torch.Generator().manual_seed(2)
    assert kind.num_labels(SQUAD) == 2 and kind.label_dtype is None and kind.fills_window
    logits = torch.randn(3, 7, 2, generator=gen)
    start, end = torch.tensor([1, 0, 4]), torch.tensor([2, 0, 6])
    ce = lambda x, t: -torch.stack([x[i].log_softmax(-1)[t[i]] for i in range(3)]).mean()  # noqa: E731
    naive = (ce(logits[..., 0], start) + ce(logits[..., 1], end)) / 2
    batch = {"start_positions": start, "end_positions": end}
    assert float(kind.loss(logits, batch)) == pytest.approx(float(naive), abs=1e-6)
    # predictions -> metrics: windows peaked at the gold answer score EM = F1 = 1
    tok = tiny_tokenizer(["who", "lives", "in", "paris", "bob", "?", "."])
    examples = [{"id": "q0", "question": "who lives in paris?", "context": "bob lives in paris.",
                 "answers": {"text": ["bob"], "answer_start": [0]}, "is_impossible": False}]
    feats, scorer = kind.scoring_rows(SQUAD, kind.eval_rows(examples, SQUAD, tok, 32), tokenizer=tok, max_length=32)
    assert isinstance(scorer, QASplit)
    preds = np.full((len(feats), 32, 2), -10.0)
    for i, (s, e) in enumerate(zip(feats["start_positions"], feats["end_positions"])):
        preds[i, s, 0] = preds[i, e, 1] = 10.0
    assert kind.metrics(SQUAD, preds, None, scorer) == {"exact_match": 1.0, "f1": 1.0}
    assert kind.teacher_metrics(SQUAD, preds, None, scorer) == {"exact_match": 100.0, "f1": 100.0, "total": 1}


# ---- a toy fourth kind: tag each token by whether its id is even --------------------------------------------


class TaggerModel(ElasticLMPreTrainedModel):
    """The standalone model of the toy kind: the encoder + a per-token linear tagger."""

    def __init__(self, config):
        super().__init__(config)
        self.elasticlm = ElasticLMModel(config)
        self.tagger = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        from transformers.modeling_outputs import TokenClassifierOutput

        h = self.elasticlm(input_ids, attention_mask, token_type_ids, return_dict=True).last_hidden_state
        return TokenClassifierOutput(logits=self.tagger(h))  # B×N×C


class TaggerHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int):
        super().__init__()
        self.tagger = nn.Linear(hidden_size, num_labels)

    def forward(self, h, attention_mask=None):
        return self.tagger(h)  # B×N×C


class Tagging(TaskKind):
    """Token tagging: one of `label_names` per token (-100: not scored)."""

    name, extract_head, head_parts, eval_batch_size = "tagging", "tagging", ("tagger",), 16

    def num_labels(self, spec):
        return len(spec.label_names)

    def encode(self, ds, spec, tokenizer, max_length, *, stride=None):
        def tokenize(batch):
            enc = tokenizer(batch["text_a"], truncation=True, max_length=max_length)
            tags = [[i % 2 if i >= 5 else -100 for i in ids] for ids in enc["input_ids"]]  # specials: no tag
            return {**enc, "labels": [t + [-100] * (max_length - len(t)) for t in tags]}  # one width: they stack

        out = ds.map(tokenize, batched=True, remove_columns=ds.column_names)
        return out.with_format("torch", columns=["input_ids", "attention_mask", "token_type_ids", "labels"])

    def head(self, hidden_size, num_labels, pooling):
        return TaggerHead(hidden_size, num_labels)

    def model_class(self):
        return TaggerModel

    def model_config(self, head):
        return {"num_labels": head.num_labels}

    def loss(self, logits, batch):
        labels = batch["labels"][:, :logits.shape[1]]
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten().long(), ignore_index=-100)

    def distill_loss(self, s, t, mask, cfg):
        picked = mask.bool()
        return F.kl_div(s.float()[picked].log_softmax(-1), t[:, :s.shape[1]].to(s.device)[picked].softmax(-1),
                        reduction="batchmean")

    def metrics(self, spec, preds, references, scorer):
        refs = np.asarray(references)[:, :preds.shape[1]]
        scored = refs != -100
        return {"accuracy": float((preds.argmax(-1)[scored] == refs[scored]).mean())}


register(Tagging())


def test_a_toy_fourth_kind_trains_and_evaluates_through_retrain(tiny_space, tiny_tokenizer, tmp_path):
    words = [f"w{i}" for i in range(tiny_space.vocab_size - 5)]
    tok = tiny_tokenizer(words)
    rng = random.Random(0)
    split = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"text_a": [" ".join(rng.choices(words, k=rng.randint(4, 12))) for _ in range(n)]})
    spec = TaskSpec("toy-tagging", "tagging", ("text_a",), ("odd", "even"), ("accuracy",), "accuracy")
    kind, max_length = kind_of(spec), 16
    train, dev = (kind.encode(split(n), spec, tok, max_length) for n in (128, 32))
    oracle = np.stack([4.0 * (np.eye(2)[np.clip(r, 0, 1)] - 0.5) for r in np.asarray(train["labels"])])  # n×N×2
    teacher = type("Teacher", (), {"num_layers": 2})()  # logits precomputed: only its depth is read
    data = RetrainData(spec, train, dev, None, tok, teacher, tok.pad_token_id, max_length, teacher_logits=oracle)
    cfg = RetrainConfig(init="scratch", train=TrainConfig(lr=3e-3, batch_size=16, max_steps=60, device="cpu",
                                                          precision="fp32", progress=False, log_every=1000),
                        distill=DistillConfig(alpha_attn=0.0, alpha_hidden=0.0))
    arch = tiny_space.sample(random.Random(0))  # any architecture: narrower blocks are grown to fit
    net = scratch_net(tiny_space, arch, spec, "toy-tagging", seed=0)
    model = build_model(net, arch, "toy-tagging", cfg, tmp_path / "pretrain", say=lambda s: None)
    assert isinstance(model, TaggerModel)
    result = retrain_model(model, data, cfg, tmp_path / "model", seed=0, run_config={}, say=lambda s: None)
    assert result["steps"] == 60 and set(result["dev"]) == {"accuracy"}
    assert result["dev"]["accuracy"] > 0.9  # chance: 0.5
    assert (tmp_path / "model" / "result.json").exists()
