"""Downstream tasks: a registry of what each task is, and one loader for all of them.

`load_task(name_or_path, data_dir=...)` returns a `TaskData`: the task's `TaskSpec` plus its splits as
`datasets.Dataset`s with the columns `text_a` [, `text_b`] and `label` (int class id, float for
regression, -1 for unlabelled rows such as GLUE's test sets). QA tasks (SQuAD) keep SQuAD's own
columns; see `elasticlm.data.squad`.

Task names (case-insensitive; `_`/`-` and a missing hyphen are tolerated, e.g. `sst2`, `SST-2`):

    GLUE     cola, sst-2, mrpc, sts-b, qqp, mnli (alias mnli-m, mnli-mm), qnli, rte
             from `data_dir` in the original GLUE TSV layout (the GLUE root holding `SST-2/train.tsv`
             ..., or the task folder itself), else from the `datasets` hub (`nyu-mll/glue`) when it
             is reachable. Splits train, dev, test; MNLI adds dev_mismatched, test_mismatched.
    SQuAD    squad-v1.1, squad-v2.0 from the official JSON (`data_dir` = folder or one .json file).
    demo     rt-polarity, rt-rating, bbc-topic: real data from registry packages; their fixed splits
             are documented in `elasticlm.data.demo`.
    a folder a user's own dataset: `train` and `test` (optional `dev`) files in csv, tsv or jsonl;
             see `elasticlm.data.userdata`.

Label ids follow the `datasets` GLUE convention (e.g. MNLI entailment=0, neutral=1,
contradiction=2), so the TSV and hub loaders give identical labels.

Splits for supernet fine-tuning (`search_split`): EfficientBERT's rule, which ELM follows — the
first 90% of the training split (unshuffled) trains the supernet, the last 10% scores architectures
during search. It is deterministic: the same training file always splits the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from elasticlm.data.spec import (DEMO_TASKS, GLUE_TASKS, PAIR, SINGLE, SQUAD_TASKS, TaskData, TaskSpec,  # noqa: F401
                                  rows_to_dataset)
from elasticlm.errors import ElasticLMError

if TYPE_CHECKING:
    import datasets


ALL_TASKS: dict[str, TaskSpec] = {**GLUE_TASKS, **SQUAD_TASKS, **DEMO_TASKS}
# extra spellings -> canonical name (MNLI-m/-mm name the two MNLI dev sets in result tables)
ALIASES = {"mnli-m": "mnli", "mnli-mm": "mnli", "squad": "squad-v1.1", "squad1": "squad-v1.1",
           "squad2": "squad-v2.0", "squad-v1": "squad-v1.1", "squad-v2": "squad-v2.0"}


def known_tasks() -> list[str]:
    """Canonical names of every built-in task (a folder path names a user dataset as well)."""
    return list(ALL_TASKS)


def _squash(name: str) -> str:
    return re.sub(r"[-_\s.]", "", name.lower())


def canonical_name(name: str) -> str | None:
    """The registry name for a spelling like `SST2` or `mnli_mm`, or None when it names no task."""
    key = name.strip().lower().replace("_", "-")
    if key in ALL_TASKS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    squashed = _squash(key)
    for candidate in [*ALL_TASKS, *ALIASES]:
        if _squash(candidate) == squashed:
            return ALIASES.get(candidate, candidate)
    return None


def _unknown_task(name: str) -> ElasticLMError:
    return ElasticLMError(
        f"unknown task '{name}'; known tasks: {', '.join(known_tasks())} "
        f"(or a folder with train/test files in csv, tsv or jsonl)"
    )


def get_spec(name: str) -> TaskSpec:
    """The `TaskSpec` of a built-in task name, or of a user dataset folder (which is loaded)."""
    canon = canonical_name(name)
    if canon is not None:
        return ALL_TASKS[canon]
    if Path(name).expanduser().is_dir():
        return load_task(name).spec
    raise _unknown_task(name)


def load_task(name_or_path: str, *, data_dir: str | None = None) -> TaskData:
    """Load a task's splits; see the module docstring for the names and sources."""
    canon = canonical_name(str(name_or_path))
    if canon in GLUE_TASKS:
        from elasticlm.data import glue

        return glue.load_glue(GLUE_TASKS[canon], data_dir)
    if canon in SQUAD_TASKS:
        from elasticlm.data import squad

        return squad.load_squad_task(SQUAD_TASKS[canon], data_dir)
    if canon in DEMO_TASKS:
        from elasticlm.data import demo

        return demo.load_demo_task(DEMO_TASKS[canon])
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        from elasticlm.data import userdata

        return userdata.load_user_task(path)
    if path.is_file():
        raise ElasticLMError(
            f"{path}: a user dataset is a folder holding train and test files (csv, tsv or jsonl), "
            f"not a single file"
        )
    if any(sep in str(name_or_path) for sep in ("/", "\\")) or str(name_or_path).startswith("."):
        raise ElasticLMError(f"{path}: dataset folder not found")
    raise _unknown_task(str(name_or_path))


def search_split(train: "datasets.Dataset") -> tuple["datasets.Dataset", "datasets.Dataset"]:
    """EfficientBERT's deterministic split of a training set: (first 90%, last 10%), unshuffled.

    The first part fine-tunes the supernet, the second scores architectures during search. The
    boundary is `int(0.9 * len(train))`, so both parts are non-empty from 2 rows on.
    """
    n = len(train)
    if n < 2:
        raise ElasticLMError(f"search_split: the training split has {n} row(s); need at least 2")
    cut = min(max(int(0.9 * n), 1), n - 1)
    return train.select(range(cut)), train.select(range(cut, n))


def encode_task(ds: "datasets.Dataset", spec: TaskSpec, tokenizer, max_length: int) -> "datasets.Dataset":
    """Tokenize a classification/regression split for a model.

    Adds `input_ids`, `attention_mask`, `token_type_ids` (each a variable-length list of up to
    `max_length` ids; pad per batch with `DataCollatorWithPadding`) and `labels` (int64 ids or
    float32), removes the text columns, and sets torch format.
    """
    missing = [f for f in (*spec.text_fields, "label") if f not in ds.column_names]
    if missing:
        raise ElasticLMError(f"task {spec.name}: split has no column '{missing[0]}' (has {ds.column_names})")

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[f] for f in spec.text_fields]
        enc = tokenizer(*texts, truncation=True, max_length=max_length)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        out["token_type_ids"] = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
        out["labels"] = batch["label"]
        return out

    encoded = ds.map(tokenize, batched=True, remove_columns=ds.column_names, desc=f"tokenizing {spec.name}")
    encoded.set_format("torch", columns=["input_ids", "attention_mask", "token_type_ids", "labels"])
    return encoded
