import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotate import formats
from annotate.formats import ImportFileError


def _read(text: str | bytes, name: str = "pairs.jsonl", kind: str = "pairs"):
    data = text if isinstance(text, bytes) else text.encode()
    return formats.read_records(io.BytesIO(data), name=name, fmt=None, kind=kind)


def _errors(text: str | bytes, name: str = "p.jsonl", kind: str = "prompts") -> ImportFileError:
    with pytest.raises(ImportFileError) as caught:
        _read(text, name=name, kind=kind)
    return caught.value


def _parquet(tmp_path, rows, kind="pairs"):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with path.open("rb") as stream:
        return formats.read_records(stream, name="data.parquet", fmt=None, kind=kind)


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
    with pytest.raises(
        ImportFileError, match=r"pairs.jsonl line 2, field 'chosen': expected a string or .*got an integer"
    ):
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


def test_a_byte_that_is_not_utf8_is_named_by_line_and_column():
    error = _errors(b'{"prompt": "ok"}\n{"prompt": "caf\xe9 au lait"}\n')
    assert error.errors == ["p.jsonl line 2: not UTF-8 text at column 16 (byte 0xe9: invalid continuation byte)"]


def test_the_column_of_a_bad_byte_counts_characters_not_bytes():
    # "été " takes six bytes but four columns, so the stray Latin-1 byte sits at column 17, byte 19.
    error = _errors(b'{"prompt": "\xc3\xa9t\xc3\xa9 \xe9"}')
    assert "line 1: not UTF-8 text at column 17 " in str(error)


def test_a_byte_order_mark_is_accepted():
    (record,) = _read(b"\xef\xbb\xbf" + json.dumps({"prompt": "Hi?"}).encode(), kind="prompts", name="p.jsonl")
    assert record.messages == [{"role": "user", "content": "Hi?"}]


def test_crlf_line_endings_are_accepted():
    lines = [json.dumps({"prompt": "A?"}), json.dumps({"prompt": "B?"})]
    assert len(_read("\r\n".join(lines) + "\r\n", kind="prompts", name="p.jsonl")) == 2


def test_blank_lines_are_skipped_and_still_counted():
    error = _errors(json.dumps({"prompt": "A?"}) + "\n\n  \r\n" + json.dumps({"prompt": 7}) + "\n")
    assert error.errors[0].startswith("p.jsonl line 4, field 'prompt': ")


def test_a_duplicate_id_names_both_lines():
    lines = [
        json.dumps({"id": "q1", "prompt": "A?"}),
        json.dumps({"prompt": "B?"}),
        json.dumps({"id": "q1", "prompt": "C?"}),
    ]
    error = _errors("\n".join(lines))
    assert error.errors == ["p.jsonl line 3, field 'id': 'q1' is also the id on line 1"]


def test_a_wrong_type_deep_in_a_message_list_names_its_json_path():
    prompt = [
        {"role": "user", "content": "A"},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": ["C"]},
    ]
    error = _errors(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": prompt}))
    assert error.errors == ["p.jsonl line 2, field 'prompt[2].content': expected a string, got a list"]


def test_faults_past_the_limit_stop_the_reading():
    error = _errors("\n".join(["{broken"] * (formats.MAX_ERRORS + 5)))
    assert (len(error.errors), error.stopped) == (formats.MAX_ERRORS, True)
    assert str(error).endswith(f"(stopped after the first {formats.MAX_ERRORS} problems)")


def test_faults_up_to_the_limit_are_all_reported():
    error = _errors("\n".join(["{broken"] * formats.MAX_ERRORS))
    assert (len(error.errors), error.stopped) == (formats.MAX_ERRORS, False)


def test_batches_stop_at_the_first_fault_while_reading_goes_on():
    good = [json.dumps({"prompt": f"Q{i}?"}) for i in range(4)]
    lines = [*good[:2], "{broken", *good[2:], json.dumps({"prompt": 1})]
    reader = formats.RecordReader(io.BytesIO("\n".join(lines).encode()), name="p.jsonl", fmt=None, kind="prompts")
    assert [len(batch) for batch in reader.batches(2)] == [2]
    assert len(reader.errors) == 2


def test_a_csv_byte_order_mark_is_not_part_of_the_first_header():
    (record,) = _read(b"\xef\xbb\xbfprompt\nHi?\n", name="p.csv", kind="prompts")
    assert record.messages == [{"role": "user", "content": "Hi?"}]


def test_a_parquet_column_of_the_wrong_type_is_named_with_the_expected_type(tmp_path):
    with pytest.raises(ImportFileError) as caught:
        _parquet(tmp_path, [{"prompt": "Q?", "chosen": 1, "rejected": "B"}])
    assert caught.value.errors == [
        "data.parquet: column 'chosen' is int64; expected a string or a list of {role: string, content: string}"
    ]


def test_a_missing_parquet_column_is_named(tmp_path):
    with pytest.raises(ImportFileError, match=r"data.parquet: column 'rejected' is missing; expected a string"):
        _parquet(tmp_path, [{"prompt": "Q?", "chosen": "A"}])


def test_parquet_message_lists_of_role_and_content_are_accepted(tmp_path):
    turn = [{"role": "assistant", "content": "A"}]
    (record,) = _parquet(tmp_path, [{"prompt": "Q?", "chosen": turn, "rejected": "B"}])
    assert record.chosen == turn


def test_a_bad_parquet_row_is_named_by_its_number(tmp_path):
    rows = [{"prompt": "Q?", "chosen": "A", "rejected": "B"}, {"prompt": "Q?", "chosen": "A", "rejected": ""}]
    with pytest.raises(ImportFileError, match=r"data.parquet row 2, field 'rejected': must not be empty"):
        _parquet(tmp_path, rows)


def test_a_csv_byte_that_is_not_utf8_is_named_by_line_and_column():
    error = _errors(b"prompt\nHi?\nCaf\xe9?\n", name="p.csv")
    assert error.errors == ["p.csv line 3: not UTF-8 text at column 4 (byte 0xe9: invalid continuation byte)"]
