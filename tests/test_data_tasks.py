"""Task loading: GLUE TSV layout, user datasets, names, splits, encoding and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elasticlm.cli import main
from elasticlm.data import glue
from elasticlm.data.tasks import canonical_name, known_tasks, load_task, rows_to_dataset, search_split
from elasticlm.errors import ElasticLMError
from elasticlm.kinds import kind_of


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def tsv(*rows: tuple) -> str:
    return "".join("\t".join(str(f) for f in row) + "\n" for row in rows)


# --- GLUE TSV fixtures, one per task, in the layout of the GLUE download ---------------------------

@pytest.fixture
def glue_dir(tmp_path: Path) -> Path:
    root = tmp_path / "glue"
    # CoLA: train/dev without header; test with header
    write(root / "CoLA/train.tsv", tsv(("gj04", 1, "", "Our friends won't buy this analysis."),
                                       ("gj04", 0, "*", "They drank the pub.")))
    write(root / "CoLA/dev.tsv", tsv(("gj04", 0, "*", "The more we study verbs, the crazier they get get.")))
    write(root / "CoLA/test.tsv", tsv(("index", "sentence"), (0, "Bill whistled past the house.")))
    write(root / "SST-2/train.tsv", tsv(("sentence", "label"), ("hide new secretions ", 0),
                                        ('the "greatest" film ', 1)))
    write(root / "SST-2/dev.tsv", tsv(("sentence", "label"), ("it 's a charming journey . ", 1)))
    write(root / "SST-2/test.tsv", tsv(("index", "sentence"), (0, "uneasy mishmash of styles")))
    # MRPC ships with a byte-order mark before "Quality"
    write(root / "MRPC/train.tsv", "\ufeff" + tsv(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                                                  (1, 702876, 702977, "Amrozi accused his brother .",
                                                   "Referring to him , Amrozi accused his brother .")))
    write(root / "MRPC/dev.tsv", tsv(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                                     (0, 1, 2, "He said no .", "She said yes .")))
    write(root / "STS-B/train.tsv", tsv(
        ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"),
        (0, "main-captions", "MSRvid", "2012test", 1, "none", "none", "A plane is taking off.",
         "An air plane is taking off.", "5.000")))
    write(root / "STS-B/dev.tsv", tsv(
        ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"),
        (0, "main-captions", "MSRvid", "2012test", 1, "none", "none", "A man plays.", "A cat sleeps.", "0.250")))
    qqp_header = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")
    write(root / "QQP/train.tsv", tsv(qqp_header, (1, 1, 2, "How do I learn?", "How can I learn?", 1),
                                      (2, 3, 4, "broken row with too few fields")))
    write(root / "QQP/dev.tsv", tsv(qqp_header, (3, 5, 6, "Why?", "Why not?", 0)))
    mnli_header = ("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                   "sentence1_parse", "sentence2_parse", "sentence1", "sentence2")
    parses = ("( a )", "( b )", "(ROOT a)", "(ROOT b)")
    write(root / "MNLI/train.tsv", tsv((*mnli_header, "label1", "gold_label"),
                                       (0, 1, "1n", "gov", *parses, "Premise one.", "Hypothesis one.", "neutral", "neutral"),
                                       (1, 2, "2e", "gov", *parses, "Premise two.", "Hypothesis two.", "entailment", "entailment")))
    five = ("label1", "label2", "label3", "label4", "label5", "gold_label")
    write(root / "MNLI/dev_matched.tsv", tsv((*mnli_header, *five),
                                             (0, 1, "1c", "gov", *parses, "M p.", "M h.", *["contradiction"] * 6)))
    write(root / "MNLI/dev_mismatched.tsv", tsv((*mnli_header, *five),
                                                (0, 1, "1e", "fic", *parses, "MM p.", "MM h.", *["entailment"] * 6)))
    write(root / "MNLI/test_matched.tsv", tsv(mnli_header, (0, 1, "1", "gov", *parses, "T p.", "T h.")))
    write(root / "QNLI/train.tsv", tsv(("index", "question", "sentence", "label"),
                                       (0, "What is it?", "It is a test.", "entailment")))
    write(root / "QNLI/dev.tsv", tsv(("index", "question", "sentence", "label"),
                                     (0, "Who?", "Nobody knows when.", "not_entailment")))
    write(root / "RTE/train.tsv", tsv(("index", "sentence1", "sentence2", "label"),
                                      (0, "Dana Reeve died.", "Christopher Reeve had an accident.", "not_entailment")))
    write(root / "RTE/dev.tsv", tsv(("index", "sentence1", "sentence2", "label"), (0, "A b.", "A.", "entailment")))
    return root


def test_glue_tsv_every_task(glue_dir: Path) -> None:
    cola = load_task("CoLA", data_dir=str(glue_dir))
    assert cola.spec.main_metric == "mcc"
    assert cola.splits["train"]["text_a"] == ["Our friends won't buy this analysis.", "They drank the pub."]
    assert cola.splits["train"]["label"] == [1, 0]
    assert cola.splits["test"]["label"] == [-1] and cola.splits["test"]["text_a"] == ["Bill whistled past the house."]

    sst = load_task("sst2", data_dir=str(glue_dir))
    assert sst.splits["train"]["text_a"][1] == 'the "greatest" film '  # bare quotes kept (no quoting)
    assert sst.splits["train"]["label"] == [0, 1] and sst.splits["test"]["label"] == [-1]

    mrpc = load_task("MRPC", data_dir=str(glue_dir / "MRPC"))  # the task folder itself works too
    assert mrpc.splits["train"][0] == {"text_a": "Amrozi accused his brother .",
                                       "text_b": "Referring to him , Amrozi accused his brother .", "label": 1}
    assert "test" not in mrpc.splits  # optional

    stsb = load_task("STS-B", data_dir=str(glue_dir))
    assert stsb.spec.kind == "regression" and kind_of(stsb.spec).num_labels(stsb.spec) == 1
    assert stsb.splits["train"]["label"] == [5.0] and stsb.splits["dev"]["label"] == [0.25]

    qqp = load_task("qqp", data_dir=str(glue_dir))
    assert len(qqp.splits["train"]) == 1  # the malformed row is skipped

    mnli = load_task("MNLI-m", data_dir=str(glue_dir))
    assert set(mnli.splits) == {"train", "dev", "dev_mismatched", "test"}
    assert mnli.splits["train"]["label"] == [1, 0]  # neutral=1, entailment=0 (datasets' order)
    assert mnli.splits["dev"]["label"] == [2] and mnli.splits["dev"]["text_a"] == ["M p."]
    assert mnli.splits["dev_mismatched"]["text_b"] == ["MM h."]

    assert load_task("qnli", data_dir=str(glue_dir)).splits["dev"]["label"] == [1]
    rte = load_task("rte", data_dir=str(glue_dir))
    assert rte.splits["train"]["label"] == [1] and rte.spec.text_fields == ("text_a", "text_b")


def test_task_names() -> None:
    assert set(known_tasks()) >= {"cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte",
                                  "squad-v1.1", "squad-v2.0", "rt-polarity", "rt-rating", "bbc-topic"}
    for spelling, canon in [("SST-2", "sst-2"), ("sst2", "sst-2"), ("STSB", "sts-b"), ("mnli_mm", "mnli"),
                            ("RT_Polarity", "rt-polarity"), ("squad2", "squad-v2.0")]:
        assert canonical_name(spelling) == canon
    assert canonical_name("glue") is None


def test_unknown_task_lists_known() -> None:
    with pytest.raises(ElasticLMError, match=r"unknown task 'nope'; known tasks: cola, sst-2.*rt-polarity"):
        load_task("nope")


def test_glue_without_data_dir_and_no_hub(monkeypatch) -> None:
    monkeypatch.setattr(glue, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ElasticLMError, match=r"unreachable; pass --data-dir .*SST-2/train.tsv"):
        load_task("sst-2")


def test_glue_missing_files_and_bad_labels(glue_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty-glue").mkdir()
    with pytest.raises(ElasticLMError, match=r"RTE/train.tsv: file not found"):
        load_task("rte", data_dir=str(tmp_path / "empty-glue"))
    write(glue_dir / "RTE/dev.tsv", tsv(("index", "sentence1", "sentence2", "label"), (0, "a", "b", "maybe")))
    with pytest.raises(ElasticLMError, match=r"RTE/dev.tsv line 2: unknown label 'maybe' in column label"):
        load_task("rte", data_dir=str(glue_dir))
    write(glue_dir / "QNLI/dev.tsv", tsv(("index", "question", "label"), (0, "q", "entailment")))
    with pytest.raises(ElasticLMError, match=r"QNLI/dev.tsv: missing column 'sentence'"):
        load_task("qnli", data_dir=str(glue_dir))


# --- user datasets ---------------------------------------------------------------------------------

def test_user_csv_class_names(tmp_path: Path) -> None:
    d = tmp_path / "reviews"
    write(d / "train.csv", 'text,label\n"good, really",pos\nawful,neg\n"multi\nline",pos\n')
    write(d / "test.csv", "text,label\nfine,pos\n")
    data = load_task(str(d))
    assert data.spec.name == "reviews" and data.spec.label_names == ("neg", "pos")
    assert data.spec.metrics == ("accuracy", "f1") and "dev" not in data.splits
    assert data.splits["train"]["text_a"] == ["good, really", "awful", "multi\nline"]
    assert data.splits["train"]["label"] == [1, 0, 1]
    assert data.eval_split() == "test"


def test_user_tsv_pairs_integer_labels(tmp_path: Path) -> None:
    d = tmp_path / "pairs"
    write(d / "train.tsv", tsv(("text_a", "text_b", "label"), ("a", "b", 2), ("c", "d", 0), ("e", "f", 1)))
    write(d / "dev.tsv", tsv(("text_a", "text_b", "label"), ("g", "h", 1)))
    write(d / "test.tsv", tsv(("text_a", "text_b"), ("i", "j")))  # unlabelled test
    data = load_task(str(d))
    assert data.spec.text_fields == ("text_a", "text_b") and data.spec.label_names == ("0", "1", "2")
    assert data.spec.metrics == ("accuracy", "macro_f1")
    assert data.splits["train"]["label"] == [2, 0, 1] and data.splits["test"]["label"] == [-1]
    assert data.eval_split() == "dev"


def test_user_jsonl_regression(tmp_path: Path) -> None:
    d = tmp_path / "scores"
    write(d / "train.jsonl", "".join(json.dumps(r) + "\n" for r in [{"text": "x", "label": 0.5}, {"text": "y", "label": 3}]))
    write(d / "test.jsonl", json.dumps({"text": "z", "label": -1.25}) + "\n")
    data = load_task(str(d))
    assert data.spec.kind == "regression" and kind_of(data.spec).num_labels(data.spec) == 1
    assert data.splits["train"]["label"] == [0.5, 3.0] and data.splits["test"]["label"] == [-1.25]


def test_user_labels_txt_fixes_order(tmp_path: Path) -> None:
    d = tmp_path / "ordered"
    write(d / "labels.txt", "low\nmid\nhigh\n")
    write(d / "train.csv", "text,label\na,high\nb,low\n")
    write(d / "test.csv", "text,label\nc,mid\n")
    data = load_task(str(d))
    assert data.spec.label_names == ("low", "mid", "high") and data.splits["train"]["label"] == [2, 0]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"train.csv": "sentence,label\na,x\n", "test.csv": "text,label\nb,x\n"},
         r"train.csv: missing column 'text' \(or 'text_a'/'text_b'\)"),
        ({"train.csv": "text,label\na,x\n", "test.csv": "text,label\nb,y\n"},
         r"test.csv line 2: unknown label 'y' \(train labels: x\)"),
        ({"train.csv": "text\na\n", "test.csv": "text,label\nb,x\n"}, r"train.csv: missing column 'label'"),
        ({"train.csv": "", "test.csv": "text,label\nb,x\n"}, r"train.csv: file is empty"),
        ({"train.csv": b"text,label\ncaf\xe9,x\n", "test.csv": "text,label\nb,x\n"},
         r"train.csv: not UTF-8 text \(byte 0xe9 on line 2\)"),
        ({"train.jsonl": '{"text": "a", "label": "x"}\n{"text": "b"\n', "test.jsonl": '{"text": "c"}\n'},
         r"train.jsonl line 2: not valid JSON"),
        ({"train.csv": "text,label\na,x\n"}, r"no test file"),
        ({"train.csv": "text,label\na,\n", "test.csv": "text\nb\n"}, r"train.csv line 2: empty label"),
        ({"train.csv": "text,label,label\na,x,y\n", "test.csv": "text\nb\n"},
         r"train.csv: column 'label' appears 2 times in the header"),
        ({"train.csv": "text,label\na,x\n", "test.tsv": "text\ttext\tlabel\nb\tc\tx\n"},
         r"test.tsv: column 'text' appears 2 times in the header"),
        ({"train.jsonl": '{"text": "a", "label": "x", "label": "y"}\n', "test.jsonl": '{"text": "b"}\n'},
         r"train.jsonl line 1: key 'label' appears 2 times"),
        ({"train.jsonl": '{"text": "a", "label": "x"}\n{"text": 5, "label": "x"}\n', "test.jsonl": '{"text": "b"}\n'},
         r"train.jsonl line 2: 'text' is a number, not a string"),
        ({"train.jsonl": '{"text_a": "a", "text_b": ["b"], "label": 1}\n',
          "test.jsonl": '{"text_a": "c", "text_b": "d"}\n'},
         r"train.jsonl line 1: 'text_b' is an array, not a string"),
        ({"train.jsonl": '{"text": "a", "label": 1}\n', "test.jsonl": '{"text": true}\n'},
         r"test.jsonl line 1: 'text' is a boolean, not a string"),
        ({"train.csv": "text,label\na,0.5\nb,nan\n", "test.csv": "text\nc\n"},
         r"train.csv line 3: label 'nan' is not a finite number"),
        ({"train.jsonl": '{"text": "a", "label": [1]}\n', "test.jsonl": '{"text": "b"}\n'},
         r"train.jsonl line 1: label is a JSON list"),
    ],
)
def test_user_dataset_bad_input(tmp_path: Path, files: dict, message: str) -> None:
    d = tmp_path / "bad"
    for name, content in files.items():
        write(d / name, content)
    with pytest.raises(ElasticLMError, match=message) as info:
        load_task(str(d))
    assert "\n" not in str(info.value)


def test_user_path_errors(tmp_path: Path) -> None:
    with pytest.raises(ElasticLMError, match=r"dataset folder not found"):
        load_task(str(tmp_path / "missing"))
    f = write(tmp_path / "train.csv", "text,label\na,b\n")
    with pytest.raises(ElasticLMError, match=r"train.csv: a user dataset is a folder"):
        load_task(str(f))


# --- splits and encoding ---------------------------------------------------------------------------

def test_search_split_is_first_90_last_10(glue_dir: Path) -> None:
    spec = load_task("sst-2", data_dir=str(glue_dir)).spec
    ds = rows_to_dataset([{"text_a": f"s{i}", "label": i % 2} for i in range(25)], spec)
    head, tail = search_split(ds)
    assert head["text_a"] == [f"s{i}" for i in range(22)] and tail["text_a"] == ["s22", "s23", "s24"]
    head2, tail2 = search_split(ds)
    assert head2["text_a"] == head["text_a"] and tail2["text_a"] == tail["text_a"]
    with pytest.raises(ElasticLMError, match="at least 2"):
        search_split(ds.select([0]))


def test_encode_task_with_a_wordpiece_tokenizer(glue_dir: Path, tiny_tokenizer) -> None:
    tok = tiny_tokenizer(["a", "man", "plays", "cat", "sleeps", "."])
    data = load_task("sts-b", data_dir=str(glue_dir))
    enc = data.splits["dev"]
    from elasticlm.data.tasks import encode_task

    out = encode_task(enc, data.spec, tok, max_length=8)
    row = out[0]
    assert set(out.column_names) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    # "A man plays." / "A cat sleeps." truncated (longest first) to 8: [CLS] a man [SEP] a cat sleeps [SEP]
    assert row["input_ids"].tolist() == [2, 5, 6, 3, 5, 8, 9, 3]
    assert row["token_type_ids"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert abs(float(row["labels"]) - 0.25) < 1e-6


def test_cli_show_user_dataset_and_unknown(tmp_path: Path, capsys) -> None:
    d = tmp_path / "mine"
    write(d / "train.csv", "text,label\ngood,pos\nbad,neg\nok,pos\n")
    write(d / "test.csv", "text,label\nfine,pos\n")
    assert main(["data", "show", str(d)]) == 0
    out = capsys.readouterr().out
    assert "train: 3 rows (neg 1 (33.3%), pos 2 (66.7%))" in out and "text_a: good" in out
    assert main(["data", "show", "no-such-task"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("elasticlm: error: unknown task 'no-such-task'; known tasks:") and "\n" not in err


def test_glue_from_hub_maps_columns_and_splits(monkeypatch) -> None:
    import datasets

    def fake_load_dataset(repo: str, config: str):
        assert (repo, config) == ("nyu-mll/glue", "mnli")
        row = {"premise": ["P."], "hypothesis": ["H."], "label": [2], "idx": [0]}
        test = {**row, "label": [-1]}
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict(row),
                                     "validation_matched": datasets.Dataset.from_dict(row),
                                     "validation_mismatched": datasets.Dataset.from_dict(row),
                                     "test_matched": datasets.Dataset.from_dict(test)})

    monkeypatch.setattr(glue, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_task("mnli")
    assert set(data.splits) == {"train", "dev", "dev_mismatched", "test"} and data.source == "nyu-mll/glue/mnli"
    assert data.splits["dev"][0] == {"text_a": "P.", "text_b": "H.", "label": 2}
    assert data.splits["test"]["label"] == [-1]


# --- long fields, quoting, the labelled rule, malformed columns -------------------------------------

LONG = "word " * 40_000  # 200,000 characters: over csv's default field limit of 131,072


def test_long_fields_load(glue_dir: Path, tmp_path: Path) -> None:
    write(glue_dir / "SST-2/train.tsv", tsv(("sentence", "label"), (LONG, 1), ("short", 0)))
    assert load_task("sst-2", data_dir=str(glue_dir)).splits["train"]["text_a"] == [LONG, "short"]
    for ext, sep in ((".csv", ","), (".tsv", "\t")):
        d = tmp_path / f"long{ext[1:]}"
        write(d / f"train{ext}", f"text{sep}label\n{LONG}{sep}a\nshort{sep}b\n")
        write(d / f"test{ext}", f"text{sep}label\n{LONG}{sep}b\n")
        data = load_task(str(d))
        assert data.splits["train"]["text_a"] == [LONG, "short"] and data.splits["test"]["text_a"] == [LONG]


def test_csv_errors_are_one_line_with_file_and_line(glue_dir: Path, tmp_path: Path) -> None:
    # a bare carriage return inside a TSV line: csv raises `_csv.Error: new-line character seen ...`
    write(glue_dir / "SST-2/train.tsv", tsv(("sentence", "label"), ("fine", 1), ("broken\rline", 0)))
    with pytest.raises(ElasticLMError, match=r"SST-2/train.tsv line 3: .*carriage return") as info:
        load_task("sst-2", data_dir=str(glue_dir))
    assert "\n" not in str(info.value)
    d = tmp_path / "cr"
    write(d / "train.tsv", "text\tlabel\nfine\ta\nbroken\rline\tb\n")
    write(d / "test.tsv", "text\tlabel\nok\ta\n")
    with pytest.raises(ElasticLMError, match=r"train.tsv line 3: .*carriage return") as info:
        load_task(str(d))
    assert "\n" not in str(info.value)


def test_user_tsv_has_no_quoting(tmp_path: Path) -> None:
    d = tmp_path / "quotes"
    write(d / "train.tsv", tsv(("text", "label"), ('"Quoted" start, then more', "pos"), ("plain", "neg"),
                               ('"unclosed quote', "pos"), ("last line", "neg")))
    write(d / "test.tsv", tsv(("text", "label"), ('he said "no"', "neg")))
    data = load_task(str(d))
    assert data.splits["train"]["text_a"] == ['"Quoted" start, then more', "plain", '"unclosed quote', "last line"]
    assert data.splits["train"]["label"] == [1, 0, 1, 0]
    assert data.splits["test"]["text_a"] == ['he said "no"']


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_user_labelled_rule(tmp_path: Path) -> None:
    d = tmp_path / "rule"
    write(d / "train.jsonl", jsonl({"text": "a", "label": "x"}, {"text": "b", "label": "y"}))
    write(d / "test.jsonl", jsonl({"text": "c"}, {"text": "d"}))
    assert load_task(str(d)).splits["test"]["label"] == [-1, -1]  # no `label` field: unlabelled
    write(d / "test.jsonl", jsonl({"text": "c"}, {"text": "d", "label": "y"}))  # used to become -1 silently
    with pytest.raises(ElasticLMError, match=r"test.jsonl line 2: .*'label'.*line 1"):
        load_task(str(d))
    write(d / "test.jsonl", jsonl({"text": "c", "label": "x"}, {"text": "d"}))
    with pytest.raises(ElasticLMError, match=r"test.jsonl line 2: .*'label'.*line 1"):
        load_task(str(d))
    write(d / "test.jsonl", jsonl({"text": "c", "label": "x"}, {"text": "d", "label": None}))
    with pytest.raises(ElasticLMError, match=r"test.jsonl line 2: empty label"):
        load_task(str(d))
    (d / "test.jsonl").unlink()
    write(d / "test.csv", "text,label\nc,x\nd,\n")  # a `label` column: every row needs a label
    with pytest.raises(ElasticLMError, match=r"test.csv line 3: empty label"):
        load_task(str(d))


def test_user_whole_float_labels_warn_regression(tmp_path: Path, caplog) -> None:
    d = tmp_path / "pandas"
    write(d / "train.csv", "text,label\na,0.0\nb,1.0\nc,1.0\n")  # as pandas writes an int column with NaNs
    write(d / "test.csv", "text,label\nd,0.0\n")
    with caplog.at_level("WARNING", logger="elasticlm.data.userdata"):
        data = load_task(str(d))
    assert data.spec.kind == "regression"  # the documented rule stands
    [record] = [r for r in caplog.records if r.name == "elasticlm.data.userdata"]
    msg = record.getMessage()
    assert "train.csv" in msg and "regression" in msg and "integer labels" in msg and "\n" not in msg
    caplog.clear()
    write(d / "train.csv", "text,label\na,0.5\nb,1.0\n")  # genuinely fractional: no warning
    with caplog.at_level("WARNING", logger="elasticlm.data.userdata"):
        assert load_task(str(d)).spec.kind == "regression"
    assert not [r for r in caplog.records if r.name == "elasticlm.data.userdata"]


def test_user_unnamed_extra_columns_still_load(tmp_path: Path) -> None:
    d = tmp_path / "trailing"  # a trailing separator on every line: unnamed, unused columns
    write(d / "train.csv", "text,label,,\na,x,,\nb,y,,\n")
    write(d / "test.csv", "text,label,,\nc,x,,\n")
    assert load_task(str(d)).splits["train"]["label"] == [0, 1]
