"""Teacher-labelled rows for task distillation (augmented copies, corpus lines) and which teacher taught a model."""

from __future__ import annotations

import torch

from elasticlm.distill.augment import augment, neighbour_table


def test_neighbours_and_swaps(tiny_tokenizer):
    tok = tiny_tokenizer(["good", "great", "bad", "awful", "movie", "film", "##s", "the"])
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(len(tok), 8, generator=g)
    emb[tok.convert_tokens_to_ids("great")] = emb[tok.convert_tokens_to_ids("good")] * 2  # same direction
    ids = tok("the good movies")["input_ids"]  # [CLS] the good movie ##s [SEP]
    table = neighbour_table(emb, tok, sorted(set(ids)), k=2)
    good, great = tok.convert_tokens_to_ids(["good", "great"])
    assert table[good][0] == great
    assert all(not tok.convert_ids_to_tokens(n).startswith(("##", "[")) for v in table.values() for n in v)
    assert tok.cls_token_id not in table and tok.convert_tokens_to_ids("##s") not in table
    rows = {"input_ids": [ids] * 20, "attention_mask": [[1] * len(ids)] * 20, "token_type_ids": [[0] * len(ids)] * 20}
    out = augment(rows, table, 2, p=0.5, seed=1)
    assert out == augment(rows, table, 2, p=0.5, seed=1) and 0 < len(out["input_ids"]) <= 40
    for new in out["input_ids"]:
        assert new != ids and len(new) == len(ids)
        assert new[0] == ids[0] and new[-1] == ids[-1] and new[4] == ids[4]  # [CLS], [SEP], ##s untouched


def test_retraining_keeps_its_copies_when_the_teacher_runs_on_every_batch(teacher_dir, sentiment, cache):
    """Copies join the training rows whether the teacher's logits are computed once (logit distillation
    only) or the teacher runs on every batch (attention / hidden-state distillation): never dropped."""
    import pytest

    from elasticlm.distill.losses import DistillConfig
    from elasticlm.errors import ElasticLMError
    from elasticlm.train.engine import TrainConfig
    from elasticlm.train.retrain import RetrainConfig, prepare_task

    def data(**distill):
        cfg = RetrainConfig(task=str(sentiment), teacher=str(teacher_dir), teacher_epochs=0.1, augment=1,
                            distill=DistillConfig(**distill), train=TrainConfig(precision="fp32", progress=False))
        cfg.validate()
        said: list[str] = []
        return prepare_task(cfg, say=said.append), said

    (once, said_once), (online, said_online) = data(alpha_attn=0.0, alpha_hidden=0.0), data(alpha_hidden=1.0)
    assert len(once.train) == len(online.train) > 120  # 120 sentences + their copies in both
    assert once.teacher_logits is not None and len(once.teacher_logits) == len(once.train)
    assert online.teacher_logits is None and any("labelled by the teacher on every batch" in s for s in said_online)
    assert (once.train["labels"][120:] == -100).all() and (online.train["labels"][120:] == -100).all()
    with pytest.raises(ElasticLMError, match="retrain.augment=1 needs a teacher loss"):
        RetrainConfig(augment=1, distill=DistillConfig(alpha_logit=0.0, alpha_attn=0.0, alpha_hidden=0.0)).validate()


def test_retraining_says_it_makes_no_copies_for_a_task_without_classes(teacher_dir, tmp_path, cache):
    """A regression task (the demo preset's augment=2 applies to it too) retrains on its own rows, and
    says so instead of dropping the setting silently."""
    from conftest import user_task
    from elasticlm.train.engine import TrainConfig
    from elasticlm.train.retrain import RetrainConfig, prepare_task

    user_task(tmp_path, ["text", "label"], lambda rng: [f"the movie was very {rng.choice(['good', 'bad', 'fine'])} .",
                                                          rng.random() * 4], 0, {"train": 40, "dev": 10, "test": 10})
    cfg = RetrainConfig(task=str(tmp_path), teacher=str(teacher_dir), teacher_epochs=0.1, augment=2,
                        train=TrainConfig(precision="fp32", progress=False))
    cfg.validate()
    said: list[str] = []
    data = prepare_task(cfg, say=said.append)
    assert len(data.train) == 40
    assert any("retrain.augment=2: augmented copies are for classification tasks; this regression" in s for s in said)


def test_transfer_lines_leave_out_the_task_and_are_drawn_deterministically():
    from elasticlm.distill.transfer import normalised, transfer_lines

    texts = ["First line of an article here.\nA  heading\nSecond line of the article here.",
             "the movie was very good indeed", "THE MOVIE  was very good indeed", "one two three four"]
    every = transfer_lines(texts, 100, exclude=set(), seed=0)
    # "A heading" is under 4 words; the repeat (after normalising) is kept once, in corpus order
    assert every == ["First line of an article here.", "Second line of the article here.",
                     "the movie was very good indeed", "one two three four"]
    task = {normalised("The movie was   very good indeed")}
    assert "the movie was very good indeed" not in transfer_lines(texts, 100, exclude=task, seed=0)
    two = transfer_lines(texts, 2, exclude=set(), seed=3)
    assert two == transfer_lines(texts, 2, exclude=set(), seed=3) and len(two) == 2 and set(two) <= set(every)
    assert [every.index(t) for t in two] == sorted(every.index(t) for t in two)


def test_retraining_adds_teacher_labelled_corpus_lines(teacher_dir, sentiment, word_corpus, cache):
    import pytest

    from elasticlm.distill.losses import DistillConfig
    from elasticlm.errors import ElasticLMError
    from elasticlm.train.engine import TrainConfig
    from elasticlm.train.retrain import RetrainConfig, prepare_task

    cfg = RetrainConfig(task=str(sentiment), teacher=str(teacher_dir), teacher_epochs=0.1, corpus=str(word_corpus),
                        transfer=50, train=TrainConfig(precision="fp32", progress=False))
    cfg.validate()
    said: list[str] = []
    data = prepare_task(cfg, say=said.append)
    assert len(data.train) == 170 and len(data.teacher_logits) == 170  # 120 sentences + 50 corpus lines
    assert (data.train["labels"][120:] == -100).all() and (data.train["labels"][:120] >= 0).all()
    assert any("50 lines of corpus" in s for s in said)
    with pytest.raises(ElasticLMError, match=r"retrain.transfer must be an integer >= 0"):
        RetrainConfig(transfer=-1).validate()
    with pytest.raises(ElasticLMError, match="retrain.transfer=5 needs a teacher loss"):
        RetrainConfig(transfer=5, distill=DistillConfig(alpha_logit=0.0, alpha_attn=0.0, alpha_hidden=0.0)).validate()


def test_a_reused_model_taught_by_another_teacher_fine_tune_is_named():
    from elasticlm.train.retrain import teacher_note

    now = {"dev": {"accuracy": 0.825, "f1": 0.83}, "test": {"accuracy": 0.848, "f1": 0.84}, "steps": 265}
    assert teacher_note({"teacher": {"dev": now["dev"], "test": now["test"]}}, now) == ""
    assert teacher_note({}, now) == ""  # a model retrained before results named their teacher
    note = teacher_note({"teacher": {"dev": {"accuracy": 0.842}, "test": {"accuracy": 0.841}}}, now)
    assert note.startswith("; note:") and "(dev 84.2 / test 84.1)" in note and "(dev 82.5 / test 84.8)" in note
