"""A user's own dataset: a folder passed wherever a task name goes.

Layout:

    my-task/
      train.csv | train.tsv | train.jsonl     required
      dev.*                                   optional (no dev split when absent)
      test.*                                  required
      labels.txt                              optional: one class name per line, fixing label ids

Columns: `text` for single sentences, or `text_a` and `text_b` for pairs, and `label`. csv files
have a header row and standard csv quoting; tsv files have a header row and no quoting (one line is
one row, tabs separate fields, quote characters are kept verbatim, as in GLUE's TSV files); jsonl
has one JSON object per line, whose text values must be JSON strings. A column name given twice (in
a header or in one JSON object) is an error. Fields may be of any length.

Labelled or not, one rule for every format: a split is labelled when its header (csv/tsv) or its
rows' keys (jsonl) have a `label` field, and then every row needs a non-empty label (an empty one
is an error naming the file and line); a split without the field is unlabelled (labels -1). In a
jsonl file every row has a `label` key or none does (a row that differs from the first is an
error naming its line). train and dev must be labelled; only test may be unlabelled.

The task kind comes from the training labels:

    every label an integer (0, 1, 2 ...)     classification; class names are the numbers, ids in
                                             numeric order
    every label a number, some not integers  regression (float labels)
    otherwise                                classification over class names, ids in sorted order
                                             (or the order of labels.txt)

Whole numbers written as floats (`0.0`, `1.0`, as pandas writes an integer column holding gaps) are
not integers: the task is regression, with a one-line warning naming the file (write integer labels
or class names for classification). Regression labels must be finite.

A dev/test label that training did not see is an error naming the file and line. Metrics:
accuracy + F1 for two classes, accuracy + macro F1 for more, Pearson + Spearman for regression.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from elasticlm.data.spec import TaskData, TaskSpec, rows_to_dataset
from elasticlm.data.textfile import read_lines, read_text
from elasticlm.errors import ElasticLMError

log = logging.getLogger(__name__)

EXTENSIONS = (".csv", ".tsv", ".jsonl")
SPLITS = ("train", "dev", "test")

# csv's field limit is a C long: sys.maxsize clamped to 2**31 - 1 where a long is 32 bits (Windows)
CSV_FIELD_LIMIT = min(sys.maxsize, 2 ** (8 * struct.calcsize("l") - 1) - 1)

# one parsed row: (line number in its file, {column: value})
Row = tuple[int, dict[str, Any]]


def allow_long_csv_fields() -> None:
    """Lift the `csv` module's field size limit (131,072 characters by default) to its maximum.

    The limit is process-wide and only guards against runaway memory use; raising it changes no
    parse result, so it is raised (never lowered) before reading a user's csv/tsv file.
    """
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)


def csv_error(path: Path, lineno: int, err: csv.Error, kind: str) -> ElasticLMError:
    """A `csv.Error` from reading `path` as one line naming the file, the line and what to fix."""
    if "new-line character" in str(err):
        return ElasticLMError(f"{path} line {lineno}: a carriage return (\\r) inside the line; {kind} fields "
                              f"cannot hold line breaks, so remove it (or save the file with \\n line endings)")
    return ElasticLMError(f"{path} line {lineno}: not valid {kind} ({err})")


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
        labelled = "label" in rows[0][1]  # the header / every row's keys (see `_read_jsonl`)
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
    rows = _read_jsonl(path) if path.suffix == ".jsonl" else _read_delimited(path)
    if not rows:
        raise ElasticLMError(f"{path}: no data rows")
    return rows


def _read_jsonl(path: Path) -> list[Row]:
    """One JSON object per line; every row has a `label` key or none does."""
    rows: list[Row] = []
    for lineno, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise ElasticLMError(f"{path} line {lineno}: not valid JSON ({err.msg})") from None
        except _DuplicateKey as dup:
            raise ElasticLMError(f"{path} line {lineno}: key '{dup.key}' appears {dup.count} times; keep one") from None
        if not isinstance(rec, dict):
            raise ElasticLMError(f"{path} line {lineno}: expected a JSON object per line")
        if rows and ("label" in rec) != ("label" in rows[0][1]):
            this, first = ("a", "none") if "label" in rec else ("no", "one")
            raise ElasticLMError(
                f"{path} line {lineno}: {this} 'label' key, but line {rows[0][0]} has {first}; every row of "
                f"a file has a label or none does (then the split is unlabelled)"
            )
        rows.append((lineno, rec))
    return rows


class _DuplicateKey(Exception):
    def __init__(self, key: str, count: int):
        super().__init__(key)
        self.key, self.count = key, count


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads` hook: an object with a repeated key is an error (json keeps the last silently)."""
    counts = Counter(key for key, _ in pairs)
    for key, count in counts.items():
        if count > 1:
            raise _DuplicateKey(key, count)
    return dict(pairs)


def _read_delimited(path: Path) -> list[Row]:
    """csv (standard quoting) or tsv (no quoting: one line, one row) with a header row; line
    numbers are those where a row starts."""
    allow_long_csv_fields()
    if path.suffix == ".tsv":
        kind = "TSV"
        reader = csv.reader(read_lines(path), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        kind = "CSV"
        reader = csv.reader(io.StringIO(read_text(path), newline=""))
    rows: list[Row] = []
    try:
        header = [name.strip() for name in next(reader)]
        repeated = [(name, n) for name, n in Counter(header).items() if n > 1 and name]  # '': unused
        if repeated:
            name, n = repeated[0]
            raise ElasticLMError(f"{path}: column '{name}' appears {n} times in the header; keep one")
        lineno = reader.line_num + 1
        for rec in reader:
            if rec and any(field.strip() for field in rec):
                if len(rec) != len(header):
                    raise ElasticLMError(f"{path} line {lineno}: {len(rec)} fields but the header has {len(header)}")
                rows.append((lineno, dict(zip(header, rec))))
            lineno = reader.line_num + 1
    except csv.Error as err:
        raise csv_error(path, reader.line_num, err, kind) from None
    return rows


def _text_columns(path: Path, rows: list[Row]) -> tuple[str, ...]:
    columns = rows[0][1]
    if "text" in columns:
        return ("text",)
    if "text_a" in columns:
        return ("text_a", "text_b") if "text_b" in columns else ("text_a",)
    raise ElasticLMError(f"{path}: missing column 'text' (or 'text_a'/'text_b'); columns: {', '.join(columns)}")


JSON_TYPES = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (list, "an array"), (dict, "an object"))


def _text(value: Any, path: Path, lineno: int, column: str) -> str:
    if value is None:
        raise ElasticLMError(f"{path} line {lineno}: missing value for column '{column}'")
    if not isinstance(value, str):
        what = next((name for kind, name in JSON_TYPES if isinstance(value, kind)), type(value).__name__)
        raise ElasticLMError(f"{path} line {lineno}: '{column}' is {what}, not a string; write the text as a "
                             f"JSON string (in quotes)")
    return value


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


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


EMPTY_LABEL = ("empty label; a split with a 'label' field needs a label on every row (only a test split may "
               "leave the field out, and is then unlabelled)")


def _infer_labels(folder: Path, train_path: Path, rows: list[Row]) -> tuple[str, tuple[str, ...] | None]:
    values = []
    for lineno, rec in rows:
        value = rec.get("label")
        if _is_empty(value):
            raise ElasticLMError(f"{train_path} line {lineno}: {EMPTY_LABEL}")
        if isinstance(value, (list, dict)):
            raise ElasticLMError(f"{train_path} line {lineno}: label is a JSON {type(value).__name__}; "
                                 f"write a number or a class name")
        values.append(value)
    names_file = folder / "labels.txt"
    if names_file.is_file():
        names = tuple(line.strip() for line in read_lines(names_file) if line.strip())
        return "classification", names
    if all(_is_int(v) for v in values):
        return "classification", tuple(str(n) for n in sorted({int(v) for v in values}))
    if all(_is_number(v) for v in values):
        whole = [v for v in values if math.isfinite(float(v)) and float(v).is_integer()]
        if len(whole) == len(values):
            example = next(str(v).strip() for v in values if not _is_int(v))
            log.warning("%s: every label is a whole number but some are written as floats (e.g. '%s'), so the "
                        "task is regression; for classification write integer labels (0, 1, ...) or class names",
                        train_path, example)
        return "regression", None
    return "classification", tuple(sorted({str(v).strip() for v in values}))


def _label(spec: TaskSpec, value: Any, path: Path, lineno: int) -> int | float:
    if _is_empty(value):
        raise ElasticLMError(f"{path} line {lineno}: {EMPTY_LABEL}")
    if spec.kind == "regression":
        if not _is_number(value):
            raise ElasticLMError(f"{path} line {lineno}: label '{value}' is not a number (the task is regression)")
        number = float(value)
        if not math.isfinite(number):
            raise ElasticLMError(f"{path} line {lineno}: label '{value}' is not a finite number "
                                 f"(the task is regression)")
        return number
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
