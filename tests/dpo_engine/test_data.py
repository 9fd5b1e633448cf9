import json

import datasets
import pytest
from trl import DPOConfig, DPOTrainer

from dpo_engine.data import DataError, TokenizedPair, load_pairs, load_records, tokenize_record, truncate_pair
from dpo_engine.packing import pack_pairs

STANDARD = [
    {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
    {"prompt": "Translate 'chat' to English:", "chosen": " cat", "rejected": " dog<|im_end|>"},
    {"prompt": "Q: 2+2=?\nA:", "chosen": "4", "rejected": " five, I think"},
]
CONVERSATIONAL = [
    {
        "prompt": [{"role": "user", "content": "What color is the sky?"}],
        "chosen": [{"role": "assistant", "content": "Blue."}],
        "rejected": [{"role": "assistant", "content": "Green, obviously."}],
    },
    {
        "prompt": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
        ],
        "chosen": [{"role": "assistant", "content": "Rome."}],
        "rejected": [{"role": "assistant", "content": "Milan, which is\nin the north."}],
    },
]


def trl_tokenized(records, tokenizer, tiny_model_dir):
    """TRL's own tokenisation: the dataset DPOTrainer prepares from these records."""
    args = DPOConfig(output_dir=str(tiny_model_dir / "trl"), report_to=[], max_length=None, bf16=False, use_cpu=True)
    trainer = DPOTrainer(
        model=str(tiny_model_dir), args=args, train_dataset=datasets.Dataset.from_list(records),
        processing_class=tokenizer,
    )
    return list(trainer.train_dataset)


@pytest.mark.parametrize("records", [STANDARD, CONVERSATIONAL], ids=["standard", "conversational"])
def test_completion_ids_match_trl(records, tokenizer, tiny_model_dir):
    expected = trl_tokenized(records, tokenizer, tiny_model_dir)
    for record, trl_example in zip(records, expected, strict=True):
        pair = tokenize_record(record, tokenizer)
        assert pair.prompt_ids == trl_example["prompt_ids"]
        assert pair.chosen_ids == trl_example["chosen_ids"]
        assert pair.rejected_ids == trl_example["rejected_ids"]


def test_standard_completion_ends_with_eos_once(tokenizer):
    pair = tokenize_record(STANDARD[1], tokenizer)
    assert pair.chosen_ids[-1] == tokenizer.eos_token_id
    assert pair.rejected_ids.count(tokenizer.eos_token_id) == 1


def test_conversational_prompt_ends_with_generation_prompt(tokenizer):
    pair = tokenize_record(CONVERSATIONAL[0], tokenizer)
    assert tokenizer.decode(pair.prompt_ids).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(pair.chosen_ids).startswith("Blue.")


def test_loss_mask_covers_completion_tokens_only():
    pair = TokenizedPair([1, 2, 3], [4, 5], [6, 7, 8])
    batch = pack_pairs([pair], pad_token_id=0)
    scored = batch.input_ids.flatten()[batch.source_index + 1]
    assert batch.target_ids.tolist() == [4, 5, 6, 7, 8]
    # Every target is predicted from the token right before it in its own sequence.
    assert batch.input_ids.flatten()[batch.source_index].tolist() == [3, 4, 3, 6, 7]
    assert scored[:2].tolist() == [4, 5]


def test_truncation_keeps_prompt_end_and_completion_start():
    pair = TokenizedPair(list(range(10)), list(range(100, 110)), list(range(200, 204)))
    cut, was_cut = truncate_pair(pair, max_length=8, max_prompt_length=3)
    assert was_cut
    assert cut.prompt_ids == [7, 8, 9]
    assert cut.chosen_ids == [100, 101, 102, 103, 104]
    assert cut.rejected_ids == [200, 201, 202, 203]


def test_short_pair_is_not_truncated():
    pair = TokenizedPair([1, 2], [3], [4, 5])
    assert truncate_pair(pair, max_length=8, max_prompt_length=4) == (pair, False)


def test_load_pairs_counts_truncated_records(tmp_path, tokenizer):
    path = tmp_path / "pairs.jsonl"
    long = {"prompt": "word " * 50, "chosen": " yes", "rejected": " no"}
    path.write_text(json.dumps(long) + "\n" + json.dumps(STANDARD[0]) + "\n")
    pairs, truncated = load_pairs(path, tokenizer, max_length=32, max_prompt_length=16)
    assert truncated == 1
    assert len(pairs[0].prompt_ids) == 16


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "save_to_disk"])
def test_formats_load_the_same_records(tmp_path, fmt):
    records = [dict(r, extra=i) for i, r in enumerate(CONVERSATIONAL)]
    dataset = datasets.Dataset.from_list(records)
    path = tmp_path / f"pairs.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.save_to_disk(str(path))
    loaded = load_records(path)
    assert [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in loaded] == CONVERSATIONAL


def test_missing_field_error_names_file_and_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(STANDARD[0]) + "\n" + json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: record 2: missing field\(s\) rejected"):
        load_records(path)


def test_invalid_json_error_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(STANDARD[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"line 2: invalid JSON"):
        load_records(path)
