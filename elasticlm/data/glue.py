"""GLUE from the original TSV download layout or from the `datasets` hub (`nyu-mll/glue`).

TSV layout (what the GLUE download script unpacks), per task folder:

    CoLA/  train.tsv dev.tsv  no header: source, label, original label, sentence;
           test.tsv           header: index, sentence
    SST-2/ header sentence, label            (test: index, sentence)
    MRPC/  header Quality, #1 ID, #2 ID, #1 String, #2 String   (test: index, #1 ID, ...)
    STS-B/ header index, genre, ..., sentence1, sentence2, score (test: no score)
    QQP/   header id, qid1, qid2, question1, question2, is_duplicate (test: id, question1, question2)
    MNLI/  train.tsv dev_matched.tsv dev_mismatched.tsv test_matched.tsv test_mismatched.tsv,
           header index, ..., sentence1, sentence2, ..., gold_label
    QNLI/  header index, question, sentence, label
    RTE/   header index, sentence1, sentence2, label

Fields are tab-separated with no quoting (GLUE's text contains bare quote characters) and may be of
any length; a line csv cannot read is an error naming the file and line. Rows with too few fields
(a handful exist in the QQP download) are skipped with a warning; test rows get label -1.
`train.tsv` and the dev file(s) are required, test files are optional.
"""

from __future__ import annotations

import csv
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from elasticlm.data.cache import offline
from elasticlm.data.spec import TaskData, TaskSpec, rows_to_dataset
from elasticlm.data.textfile import read_lines
from elasticlm.data.userdata import allow_long_csv_fields, csv_error
from elasticlm.errors import ElasticLMError

log = logging.getLogger(__name__)

HUB_ID = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueLayout:
    folder: str  # task folder name in the GLUE download
    hub_config: str  # `datasets` config name
    text_columns: tuple[str, ...]  # TSV header names of text_a[, text_b]
    label_column: str
    hub_text_columns: tuple[str, ...]
    headerless: tuple[str, ...] | None = None  # column names for header-less train/dev (CoLA)
    files: tuple[tuple[str, str], ...] = (("train", "train.tsv"), ("dev", "dev.tsv"), ("test", "test.tsv"))


MNLI_FILES = (("train", "train.tsv"), ("dev", "dev_matched.tsv"), ("dev_mismatched", "dev_mismatched.tsv"),
              ("test", "test_matched.tsv"), ("test_mismatched", "test_mismatched.tsv"))

LAYOUTS: dict[str, GlueLayout] = {
    "cola": GlueLayout("CoLA", "cola", ("sentence",), "label", ("sentence",),
                       headerless=("source", "label", "original_label", "sentence")),
    "sst-2": GlueLayout("SST-2", "sst2", ("sentence",), "label", ("sentence",)),
    "mrpc": GlueLayout("MRPC", "mrpc", ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2")),
    "sts-b": GlueLayout("STS-B", "stsb", ("sentence1", "sentence2"), "score", ("sentence1", "sentence2")),
    "qqp": GlueLayout("QQP", "qqp", ("question1", "question2"), "is_duplicate", ("question1", "question2")),
    "mnli": GlueLayout("MNLI", "mnli", ("sentence1", "sentence2"), "gold_label", ("premise", "hypothesis"),
                       files=MNLI_FILES),
    "qnli": GlueLayout("QNLI", "qnli", ("question", "sentence"), "label", ("question", "sentence")),
    "rte": GlueLayout("RTE", "rte", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
}

HUB_SPLITS = {"train": "train", "validation": "dev", "test": "test", "validation_matched": "dev",
              "validation_mismatched": "dev_mismatched", "test_matched": "test",
              "test_mismatched": "test_mismatched"}


def load_glue(spec: TaskSpec, data_dir: str | None) -> TaskData:
    """A GLUE task from a TSV folder when `data_dir` is given, else from the hub."""
    layout = LAYOUTS[spec.name]
    if data_dir is not None:
        return _load_tsv(spec, layout, _task_folder(Path(data_dir).expanduser(), layout))
    return _load_hub(spec, layout)


def _task_folder(data_dir: Path, layout: GlueLayout) -> Path:
    """`data_dir` may be the GLUE root (holding `SST-2/`) or the task folder itself."""
    if not data_dir.is_dir():
        raise ElasticLMError(f"{data_dir}: GLUE data folder not found")
    for candidate in (data_dir / layout.folder, data_dir):
        if (candidate / layout.files[0][1]).is_file():
            return candidate
    for child in data_dir.iterdir():  # case-insensitive folder name (e.g. `sst-2/`)
        if child.is_dir() and child.name.lower() == layout.folder.lower():
            return child
    raise ElasticLMError(
        f"{data_dir / layout.folder / layout.files[0][1]}: file not found; --data-dir must hold the "
        f"GLUE layout ({layout.folder}/train.tsv, {layout.folder}/dev.tsv) or be the {layout.folder} folder"
    )


def _load_tsv(spec: TaskSpec, layout: GlueLayout, folder: Path) -> TaskData:
    splits = {}
    for split, filename in layout.files:
        path = folder / filename
        if not path.is_file():
            if split.startswith("test"):
                continue
            raise ElasticLMError(f"{path}: file not found (GLUE layout: {layout.folder}/{filename})")
        splits[split] = rows_to_dataset(_read_tsv(spec, layout, path, split), spec)
    return TaskData(spec, splits, source=str(folder))


def _read_tsv(spec: TaskSpec, layout: GlueLayout, path: Path, split: str) -> list[dict]:
    allow_long_csv_fields()
    reader = csv.reader(read_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        records = list(reader)
    except csv.Error as err:
        raise csv_error(path, reader.line_num, err, "TSV") from None
    is_test = split.startswith("test")
    if layout.headerless is not None and not is_test:
        header, first = list(layout.headerless), 1
    else:
        header, first = records[0], 2
        records = records[1:]
    index = {name.strip(): i for i, name in enumerate(header)}
    wanted = list(layout.text_columns) + ([] if is_test else [layout.label_column])
    for name in wanted:
        if name not in index:
            raise ElasticLMError(f"{path}: missing column '{name}' in the header ({', '.join(header)})")
    text_idx = [index[name] for name in layout.text_columns]
    label_idx = None if is_test else index[layout.label_column]
    need = max(text_idx + ([label_idx] if label_idx is not None else [])) + 1
    rows, skipped = [], 0
    for lineno, rec in enumerate(records, start=first):
        if not rec or rec == [""]:
            continue
        if len(rec) < need:
            skipped += 1
            continue
        row = {field: rec[i] for field, i in zip(spec.text_fields, text_idx)}
        row["label"] = -1 if label_idx is None else _label(spec, rec[label_idx], path, lineno, layout.label_column)
        rows.append(row)
    if skipped:
        log.warning("%s: skipped %d malformed row(s) with fewer than %d fields", path, skipped, need)
    if not rows:
        raise ElasticLMError(f"{path}: no data rows")
    return rows


def _label(spec: TaskSpec, value: str, path: Path, lineno: int, column: str) -> int | float:
    value = value.strip()
    if spec.kind == "regression":
        try:
            return float(value)
        except ValueError:
            raise ElasticLMError(f"{path} line {lineno}: {column} '{value}' is not a number") from None
    assert spec.label_names is not None
    if value in spec.label_names:
        return spec.label_names.index(value)
    if value.isdigit() and int(value) < len(spec.label_names):
        return int(value)
    raise ElasticLMError(
        f"{path} line {lineno}: unknown label '{value}' in column {column} "
        f"(expected one of {', '.join(spec.label_names)} or 0-{len(spec.label_names) - 1})"
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub host accepts a TCP connection (a quick probe, so an offline
    machine fails in seconds instead of after `datasets`' retries)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_hub(spec: TaskSpec, layout: GlueLayout) -> TaskData:
    hf_offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE")
    hint = (f"pass --data-dir with the GLUE TSV layout ({layout.folder}/train.tsv, {layout.folder}/dev.tsv)")
    if offline() and not hf_offline:
        raise ElasticLMError(f"GLUE task {spec.name}: ELASTICLM_OFFLINE is set and no --data-dir given; {hint}")
    if not hf_offline and not hub_reachable():
        raise ElasticLMError(f"GLUE task {spec.name}: the datasets hub ({HUB_ID}) is unreachable; {hint}")
    import datasets

    try:
        raw = datasets.load_dataset(HUB_ID, layout.hub_config)
    except Exception as err:  # noqa: BLE001 - any hub failure becomes one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ElasticLMError(f"GLUE task {spec.name}: loading {HUB_ID}/{layout.hub_config} failed ({first}); {hint}") from None
    splits = {}
    for hub_split, ds in raw.items():
        if hub_split not in HUB_SPLITS:
            continue
        ds = ds.rename_columns(dict(zip(layout.hub_text_columns, spec.text_fields)))
        ds = ds.select_columns([*spec.text_fields, "label"])
        if spec.kind == "regression":
            ds = ds.cast_column("label", datasets.Value("float32"))
        splits[HUB_SPLITS[hub_split]] = ds
    return TaskData(spec, splits, source=f"{HUB_ID}/{layout.hub_config}")
