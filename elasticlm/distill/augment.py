"""Data augmentation for task distillation, in the manner of TinyBERT (docs: README, "Retraining").

At demo scale the task teacher carries most of what a small student learns, and it can teach on any
input, labelled or not. So each training example is copied a few times with words swapped for their
nearest neighbours in the teacher's own input-embedding space (cosine, among whole-word vocabulary
entries), and the teacher's logits on the copies become extra distillation targets (no ground-truth
label). Word pieces that continue a word (`##…`) and special tokens are never touched. Deterministic
for a seed.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from elasticlm.errors import ElasticLMError


def check_augment(where: str, copies, p) -> None:
    """A one-line error for a bad `augment` (copies per example) or `augment_p` under config section `where`."""
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise ElasticLMError(f"{where}.augment must be an integer >= 0 (copies per example), got {copies!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
        raise ElasticLMError(f"{where}.augment_p must be in (0, 1] (share of words swapped), got {p!r}")


def neighbour_table(embeddings: torch.Tensor, tokenizer, ids: list[int], k: int = 15,
                    chunk: int = 1024) -> dict[int, list[int]]:
    """For each token id in `ids`: its `k` nearest whole-word vocabulary entries by cosine (itself excluded)."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(embeddings.shape[0])))
    special = set(tokenizer.all_special_ids)
    words = [i for i, t in enumerate(vocab) if t is not None and i not in special and not t.startswith("##")
             and not t.startswith("[") and t.isalpha()]
    cand = torch.nn.functional.normalize(embeddings[words].float(), dim=-1)  # W×d
    out: dict[int, list[int]] = {}
    todo = [i for i in ids if i not in special and vocab[i] is not None and vocab[i].isalpha()]
    words_t = torch.tensor(words)
    for s in range(0, len(todo), chunk):
        part = todo[s:s + chunk]
        q = torch.nn.functional.normalize(embeddings[part].float(), dim=-1)  # c×d
        sims = q @ cand.T  # c×W
        top = sims.topk(k + 1, dim=-1).indices
        for i, row in zip(part, top.tolist()):
            out[i] = [int(words_t[j]) for j in row if int(words_t[j]) != i][:k]
    return out


def augment(rows: dict[str, list], table: dict[int, list[int]], copies: int, *, p: float = 0.4,
            seed: int = 0) -> dict[str, list]:
    """`copies` augmented versions of every encoded row (input_ids / attention_mask / token_type_ids):
    each replaceable token is swapped for a random one of its neighbours with probability `p`.
    Copies identical to their original are dropped."""
    rng = random.Random(f"{seed}:augment")
    out: dict[str, list] = {k: [] for k in ("input_ids", "attention_mask", "token_type_ids")}
    for c in range(copies):
        for ids, mask, types in zip(rows["input_ids"], rows["attention_mask"], rows["token_type_ids"]):
            new = [rng.choice(table[t]) if t in table and table[t] and rng.random() < p else t for t in ids]
            if new == list(ids):
                continue
            out["input_ids"].append(new)
            out["attention_mask"].append(list(mask))
            out["token_type_ids"].append(list(types))
    return out


def neighbour_copies(rows: dict[str, list], embeddings: torch.Tensor, tokenizer, copies: int, *, p: float,
                     seed: int) -> dict[str, list]:
    """`augment` with the neighbour table of the tokens `rows` use, in the space of `embeddings` (a
    teacher's V×d input embedding): the augmented copies retraining and the agreement fitness score on."""
    ids = sorted({t for r in rows["input_ids"] for t in r})
    return augment(rows, neighbour_table(embeddings, tokenizer, ids), copies, p=p, seed=seed)


def as_columns(ds) -> dict[str, list]:
    """The token columns of an encoded `datasets.Dataset` as plain lists."""
    return {k: [list(map(int, np.asarray(v))) for v in ds[k]] for k in ("input_ids", "attention_mask",
                                                                        "token_type_ids")}


def input_embeddings(teacher) -> torch.Tensor:
    """A loaded teacher's V×d input embedding (detached, on the CPU): the space words are swapped in."""
    return teacher.model.get_input_embeddings().weight.detach().cpu()


def copies_dataset(ds, teacher, copies: int, *, p: float, seed: int):
    """`neighbour_copies` of an encoded dataset's rows, in `teacher`'s embedding space, as a dataset of
    their own, labelled -100 (no task loss: the teacher's output is their only target)."""
    import datasets

    extra = neighbour_copies(as_columns(ds), input_embeddings(teacher), teacher.tokenizer, copies, p=p, seed=seed)
    extra["labels"] = [-100] * len(extra["input_ids"])
    return datasets.Dataset.from_dict(extra)


def concatenated(ds, extra):
    """The rows of encoded `ds` followed by those of `extra` (as `copies_dataset` makes), torch-formatted."""
    import datasets

    cols = ["input_ids", "attention_mask", "token_type_ids", "labels"]
    return datasets.concatenate_datasets([ds.select_columns(cols).cast(extra.features),
                                          extra.select_columns(cols)]).with_format("torch")
