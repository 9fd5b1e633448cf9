import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate import formats
from annotate.formats import ImportFileError


def _read(text: str, name: str = "pairs.jsonl", kind: str = "pairs"):
    return formats.read_records(io.BytesIO(text.encode()), name=name, fmt=None, kind=kind)


def test_standard_pair_becomes_user_and_assistant_messages():
    (record,) = _read(json.dumps({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}))
    assert record.prompt.messages == [{"role": "user", "content": "Hi?"}]
    assert record.chosen == [{"role": "assistant", "content": "Hello!"}]


def test_conversational_pair_keeps_system_and_turns():
    prompt = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "A?"},
        {"role": "assistant", "content": "B."},
        {"role": "user", "content": "C?"},
    ]
    line = json.dumps({"prompt": prompt, "chosen": [{"role": "assistant", "content": "D."}], "rejected": "E."})
    (record,) = _read(line)
    assert record.prompt.messages == prompt


def test_error_names_line_and_field():
    good = json.dumps({"prompt": "ok", "chosen": "a", "rejected": "b"})
    text = good + "\n" + json.dumps({"prompt": "x", "chosen": 3})
    with pytest.raises(ImportFileError, match=r"pairs.jsonl line 2, field 'chosen': must be a string"):
        _read(text)


def test_every_bad_line_is_reported():
    text = "\n".join(["{not json", json.dumps({"prompt": ""}), json.dumps({"chosen": "a"})])
    with pytest.raises(ImportFileError) as caught:
        _read(text, kind="prompts", name="p.jsonl")
    assert len(caught.value.errors) == 3
    assert caught.value.errors[0].startswith("p.jsonl line 1: invalid JSON")


def test_oversized_field_is_refused(settings):
    settings.DUET_MAX_TEXT_CHARS = 10
    with pytest.raises(ImportFileError, match=r"field 'prompt'.*limit is 10"):
        _read(json.dumps({"prompt": "x" * 11}), kind="prompts", name="p.jsonl")


def test_bad_role_is_refused():
    line = json.dumps({"prompt": [{"role": "wizard", "content": "x"}]})
    with pytest.raises(ImportFileError, match=r"field 'prompt\[0\].role'"):
        _read(line, kind="prompts", name="p.jsonl")


def test_csv_rows_are_numbered_as_a_spreadsheet_shows_them():
    text = 'prompt,chosen,rejected\n"Hi?",Hello,Bye\n"Hi?",,Bye\n'
    with pytest.raises(ImportFileError, match=r"pairs.csv row 3, field 'chosen'"):
        _read(text, name="pairs.csv")


def test_csv_cells_may_hold_message_lists():
    prompt = json.dumps([{"role": "user", "content": "Hi?"}]).replace('"', '""')
    (record,) = _read(f'prompt,chosen,rejected\n"{prompt}",Hello,Bye\n', name="pairs.csv")
    assert record.prompt.messages == [{"role": "user", "content": "Hi?"}]


def test_parquet_records_are_read(tmp_path):
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "Q?", "chosen": "A", "rejected": "B", "tags": ["t"]}]), path)
    with path.open("rb") as stream:
        (record,) = formats.read_records(stream, name="pairs.parquet", fmt=None, kind="pairs")
    assert record.prompt.tags == ["t"]


def test_unknown_extension_is_refused():
    with pytest.raises(ImportFileError, match="cannot tell the format"):
        _read("{}", name="pairs.txt")


def test_identical_sides_are_refused():
    with pytest.raises(ImportFileError, match="identical"):
        _read(json.dumps({"prompt": "Q", "chosen": "A", "rejected": "A"}))
