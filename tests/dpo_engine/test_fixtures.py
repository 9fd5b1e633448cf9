import torch


def test_tiny_model_scores_templated_text(tokenizer, make_tiny_model):
    model = make_tiny_model()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    if not isinstance(ids, list):
        ids = ids["input_ids"]
    logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer))
