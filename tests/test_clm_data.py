"""Instruction data: a truncated ShareGPT-style JSON decodes to its complete objects only; Dolly
JSONL files and folders; missing fields are one-line user errors; the held-out split is fixed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from elasticlm.clm import data as clm_data
from elasticlm.clm.data import (Instruction, iter_json_array, jsonl_pairs, load_instructions, sft_batch,
                                sharegpt_pairs, split_pairs, tokenize_pairs)
from elasticlm.errors import ElasticLMError


def conversations(n):
    return [{"id": f"c{i}", "conversations": [{"from": "human", "value": f"question {i} {{with braces}} \"q\""},
                                              {"from": "gpt", "value": f"answer {i} ]}}, [1, 2]"}]}
            for i in range(n)]


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
def test_truncated_json_array_keeps_every_complete_object(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(clm_data, "CHUNK", chunk)
    items = conversations(6)
    text = json.dumps(items, indent=2)
    whole = tmp_path / "whole.json"
    whole.write_text(text)
    assert list(iter_json_array(whole)) == items
    cut_at = text.index('"c4"') + 10  # inside the fifth object
    cut = tmp_path / "cut.json"
    cut.write_text(text[:cut_at])
    assert list(iter_json_array(cut)) == items[:4]
    exact = tmp_path / "exact.json"  # cut right after a complete object (no closing bracket)
    end_of_third = text.index('"c3"') - text[:text.index('"c3"')][::-1].index("{") - 1
    exact.write_text(text[:end_of_third].rstrip().rstrip(","))
    assert list(iter_json_array(exact)) == items[:3]
    pairs = list(sharegpt_pairs(cut))
    assert [p.instruction for p in pairs] == [f"question {i} {{with braces}} \"q\"" for i in range(4)]
    assert pairs[0].response == "answer 0 ]}, [1, 2]"


def test_not_an_array_is_a_user_error(tmp_path):
    f = tmp_path / "x.json"
    f.write_text('{"a": 1}')
    with pytest.raises(ElasticLMError, match="JSON array"):
        list(iter_json_array(f))


def test_dolly_jsonl_file_and_folder(tmp_path):
    rows = [{"instruction": "Name a colour.", "context": "", "response": "Blue.", "category": "open_qa"},
            {"instruction": "Summarise.", "context": "Cats sleep a lot.", "response": "Cats sleep."}]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "d" / "b.jsonl").write_text(json.dumps({"instruction": "Hi?", "response": "Hello."}) + "\n")
    got = load_instructions(str(tmp_path / "d"))
    assert [p.instruction for p in got] == ["Name a colour.", "Summarise.", "Hi?"]
    assert got[1].user_text() == "Summarise.\n\nCats sleep a lot."
    assert load_instructions(str(tmp_path / "d" / "a.jsonl"), limit=1)[0].response == "Blue."


def test_missing_fields_are_one_line_errors(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"instruction": "x", "response": "y"}) + "\n" + json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(ElasticLMError, match=r"bad.jsonl:2: missing or empty field\(s\) response") as err:
        list(jsonl_pairs(f))
    assert "\n" not in str(err.value)
    f.write_text("not json\n")
    with pytest.raises(ElasticLMError, match="bad.jsonl:1: not valid JSON"):
        list(jsonl_pairs(f))
    with pytest.raises(ElasticLMError, match="unknown instruction source"):
        load_instructions("no-such-source")


def test_heldout_split_is_fixed_by_instruction():
    pairs = [Instruction(f"instruction number {i}", "", "r") for i in range(400)]
    train, held = split_pairs(pairs)
    assert 20 <= len(held) <= 60 and len(train) + len(held) == 400
    train2, held2 = split_pairs(list(reversed(pairs)))
    assert {p.instruction for p in held} == {p.instruction for p in held2}


def test_tokenized_pairs_and_sft_labels(tiny_tokenizer):
    tok = tiny_tokenizer(["what", "is", "the", "capital", "of", "france", "paris", "a", "city"])
    tok.eos_token = "[SEP]"
    pairs = [Instruction("what is the capital of france", "", "paris"),
             Instruction("what is " * 30, "", "a city")]
    items = tokenize_pairs(pairs, tok, max_prompt=20, max_response=8)
    assert len(items) == 1 and items[0].response[-1] == tok.eos_token_id  # the long prompt is dropped
    b = sft_batch(items + items[:1], pad=0)
    n_prompt = len(items[0].prompt)
    assert (b["labels"][0, :n_prompt] == -100).all()
    assert b["labels"][0, n_prompt:].tolist() == items[0].response


def test_causal_blocks_join_texts_with_eos(tmp_path, cache, tiny_tokenizer):
    from elasticlm.clm.data import causal_blocks

    tok = tiny_tokenizer(["a", "b", "c"])
    tok.eos_token = "[SEP]"
    f = tmp_path / "c.txt"
    f.write_text("a b c\n" * 20)
    blocks = causal_blocks(str(f), tok, 8, tokenizer_id="tiny")
    assert blocks.shape == (10, 8)
    assert np.array_equal(blocks[0], [5, 6, 7, 3, 5, 6, 7, 3])
    assert causal_blocks(str(f), tok, 8, tokenizer_id="tiny").shape == (10, 8)  # cached
