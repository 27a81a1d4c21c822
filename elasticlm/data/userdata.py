"""A user's own dataset: a folder passed wherever a task name goes.

Layout:

    my-task/
      train.csv | train.tsv | train.jsonl     required
      dev.*                                   optional (no dev split when absent)
      test.*                                  required
      labels.txt                              optional: one class name per line, fixing label ids

Columns: `text` for single sentences, or `text_a` and `text_b` for pairs, and `label`. csv/tsv
files have a header row (standard csv quoting); jsonl has one JSON object per line. The `label`
column is required in train and dev; a test file without it is unlabelled (label -1).

The task kind comes from the training labels:

    every label an integer (0, 1, 2 ...)     classification; class names are the numbers, ids in
                                             numeric order
    every label a number, some not integers  regression (float labels)
    otherwise                                classification over class names, ids in sorted order
                                             (or the order of labels.txt)

A dev/test label that training did not see is an error naming the file and line. Metrics:
accuracy + F1 for two classes, accuracy + macro F1 for more, Pearson + Spearman for regression.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from elasticlm.data.spec import TaskData, TaskSpec, rows_to_dataset
from elasticlm.data.textfile import read_lines, read_text
from elasticlm.errors import ElasticLMError

EXTENSIONS = (".csv", ".tsv", ".jsonl")
SPLITS = ("train", "dev", "test")

# one parsed row: (line number in its file, {column: value})
Row = tuple[int, dict[str, Any]]


def load_user_task(folder: Path) -> TaskData:
    """Load a user dataset folder; see the module docstring for the layout."""
    files = {split: _split_file(folder, split) for split in SPLITS}
    for split in ("train", "test"):
        if files[split] is None:
            raise ElasticLMError(
                f"{folder}: no {split} file; a dataset folder needs {split}.csv, {split}.tsv or {split}.jsonl"
            )
    raw = {split: _read_rows(path) for split, path in files.items() if path is not None}
    text_columns = _text_columns(files["train"], raw["train"])
    for split, rows in raw.items():
        needed = [*text_columns] + ([] if split == "test" else ["label"])
        for column in needed:
            if column not in rows[0][1]:
                raise ElasticLMError(f"{files[split]}: missing column '{column}' (columns: {', '.join(rows[0][1])})")

    kind, label_names = _infer_labels(folder, files["train"], raw["train"])
    spec = _spec(folder.name, kind, label_names, len(text_columns))
    splits = {}
    for split, rows in raw.items():
        labelled = "label" in rows[0][1]
        out = []
        for lineno, rec in rows:
            row = {field: _text(rec.get(col), files[split], lineno, col)
                   for field, col in zip(spec.text_fields, text_columns)}
            row["label"] = _label(spec, rec.get("label"), files[split], lineno) if labelled else -1
            out.append(row)
        splits[split] = rows_to_dataset(out, spec)
    return TaskData(spec, splits, source=str(folder))


def _split_file(folder: Path, split: str) -> Path | None:
    found = [folder / f"{split}{ext}" for ext in EXTENSIONS if (folder / f"{split}{ext}").is_file()]
    if len(found) > 1:
        raise ElasticLMError(f"{folder}: several {split} files ({', '.join(p.name for p in found)}); keep one")
    return found[0] if found else None


def _read_rows(path: Path) -> list[Row]:
    """All data rows of a csv/tsv/jsonl file as (line number, {column: value})."""
    if path.suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(read_lines(path), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ElasticLMError(f"{path} line {lineno}: not valid JSON ({err.msg})") from None
            if not isinstance(rec, dict):
                raise ElasticLMError(f"{path} line {lineno}: expected a JSON object per line")
            rows.append((lineno, rec))
    else:
        rows = _read_delimited(path)
    if not rows:
        raise ElasticLMError(f"{path}: no data rows")
    return rows


def _read_delimited(path: Path) -> list[Row]:
    """csv/tsv with a header row and standard quoting; line numbers are those where a row starts."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""),
                        delimiter="\t" if path.suffix == ".tsv" else ",")
    header = [name.strip() for name in next(reader)]
    rows, lineno = [], reader.line_num + 1
    for rec in reader:
        if rec and any(field.strip() for field in rec):
            if len(rec) != len(header):
                raise ElasticLMError(f"{path} line {lineno}: {len(rec)} fields but the header has {len(header)}")
            rows.append((lineno, dict(zip(header, rec))))
        lineno = reader.line_num + 1
    return rows


def _text_columns(path: Path, rows: list[Row]) -> tuple[str, ...]:
    columns = rows[0][1]
    if "text" in columns:
        return ("text",)
    if "text_a" in columns:
        return ("text_a", "text_b") if "text_b" in columns else ("text_a",)
    raise ElasticLMError(f"{path}: missing column 'text' (or 'text_a'/'text_b'); columns: {', '.join(columns)}")


def _text(value: Any, path: Path, lineno: int, column: str) -> str:
    if value is None:
        raise ElasticLMError(f"{path} line {lineno}: missing value for column '{column}'")
    return str(value)


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().lstrip("+-").isdigit()


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
        return True
    except ValueError:
        return False


def _infer_labels(folder: Path, train_path: Path, rows: list[Row]) -> tuple[str, tuple[str, ...] | None]:
    values = []
    for lineno, rec in rows:
        value = rec.get("label")
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ElasticLMError(f"{train_path} line {lineno}: empty label")
        values.append(value)
    names_file = folder / "labels.txt"
    if names_file.is_file():
        names = tuple(line.strip() for line in read_lines(names_file) if line.strip())
        return "classification", names
    if all(_is_int(v) for v in values):
        return "classification", tuple(str(n) for n in sorted({int(v) for v in values}))
    if all(_is_number(v) for v in values):
        return "regression", None
    return "classification", tuple(sorted({str(v).strip() for v in values}))


def _label(spec: TaskSpec, value: Any, path: Path, lineno: int) -> int | float:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ElasticLMError(f"{path} line {lineno}: empty label")
    if spec.kind == "regression":
        if not _is_number(value):
            raise ElasticLMError(f"{path} line {lineno}: label '{value}' is not a number (the task is regression)")
        return float(value)
    assert spec.label_names is not None
    key = str(int(value)) if _is_int(value) else str(value).strip()
    if key not in spec.label_names:
        raise ElasticLMError(
            f"{path} line {lineno}: unknown label '{key}' (train labels: {', '.join(spec.label_names)})"
        )
    return spec.label_names.index(key)


def _spec(name: str, kind: str, label_names: tuple[str, ...] | None, n_texts: int) -> TaskSpec:
    fields = ("text_a", "text_b") if n_texts == 2 else ("text_a",)
    if kind == "regression":
        return TaskSpec(name, kind, fields, None, ("pearson", "spearman"), "pearson", "user dataset")
    assert label_names is not None
    metrics = ("accuracy", "f1") if len(label_names) == 2 else ("accuracy", "macro_f1")
    return TaskSpec(name, kind, fields, label_names, metrics, "accuracy", "user dataset")
