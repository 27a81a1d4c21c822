"""Transfer rows for task distillation: real sentences of the pretraining corpus, labelled by the
task teacher alone.

Retraining learns from a few thousand labelled sentences; the teacher can label any text. Corpus
lines (an article's paragraphs, a treebank's sentences) that are not a text of the task are drawn
once per run with a fixed seed, encoded with the teacher's tokenizer and added to the training rows
with label -100: the teacher's output is their only target, as for the augmented copies
(`elasticlm.distill.augment`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from elasticlm.errors import ElasticLMError

MIN_WORDS = 4
"""Shorter lines (headings, bylines) are not drawn."""


def normalised(text: str) -> str:
    """`text` with every run of whitespace one space and lower-cased: how texts are compared."""
    return " ".join(str(text).split()).lower()


def check_transfer(where: str, n) -> None:
    """A one-line error for a bad `transfer` count under config section `where`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ElasticLMError(f"{where}.transfer must be an integer >= 0 (corpus lines), got {n!r}")


def transfer_lines(texts: Iterable[str], n: int, *, exclude: set[str], seed: int) -> list[str]:
    """`n` lines of `texts` (each text split at its line breaks; lines under MIN_WORDS words, repeats and
    lines whose `normalised` form is in `exclude` left out), drawn without replacement by
    `random.Random(seed)` and kept in corpus order. Fewer when the corpus has fewer."""
    pool, seen = [], set(exclude)
    for text in texts:
        for line in str(text).splitlines():
            key = normalised(line)
            if len(key.split()) >= MIN_WORDS and key not in seen:
                seen.add(key)
                pool.append(line.strip())
    if n >= len(pool):
        return pool
    keep = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in keep]


def transfer_dataset(lines: list[str], tokenizer, max_length: int):
    """`lines` encoded as single sentences by the teacher's `tokenizer` (cut at `max_length` tokens),
    labelled -100, in the columns `augment.copies_dataset` makes."""
    import datasets

    enc = tokenizer(lines, truncation=True, max_length=max_length, return_token_type_ids=True)
    return datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                       "token_type_ids": enc["token_type_ids"], "labels": [-100] * len(lines)})
