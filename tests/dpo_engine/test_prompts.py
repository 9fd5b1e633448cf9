import json

import pytest

from dpo_engine.prompts import read_prompts


def test_read_prompts_from_jsonl_text_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl = tmp_path / "p.jsonl"
    messages = [{"role": "user", "content": "Name a colour."}]
    jsonl.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n\n" + json.dumps({"prompt": messages}) + "\n")
    assert [(r.id, r.prompt) for r in read_prompts(jsonl)] == [("a", "hi"), (None, messages)]
    text = tmp_path / "p.txt"
    text.write_text("first\n\nsecond\n")
    assert [r.prompt for r in read_prompts(text)] == ["first", "second"]
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["x", "y"], "prompt_id": [4, 5]}), parquet)
    assert [(r.id, r.prompt) for r in read_prompts(parquet)] == [(4, "x"), (5, "y")]


def test_read_prompts_names_the_bad_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"text": "no prompt"}) + "\n")
    with pytest.raises(ValueError, match=r"p\.jsonl: line 2: expected an object with a 'prompt' field"):
        read_prompts(path)


def test_read_prompts_refuses_an_empty_message_list(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt": "ok"}, {"prompt": []}]))
    with pytest.raises(ValueError, match=r"p\.json: item 2: 'prompt' must be a non-empty string or a list"):
        read_prompts(path)


def test_read_prompts_refuses_an_unknown_format(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("prompt\nhi\n")
    with pytest.raises(ValueError, match=r"unsupported prompts format"):
        read_prompts(path)
