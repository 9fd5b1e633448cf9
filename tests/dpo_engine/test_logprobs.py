import pytest
import torch

from dpo_engine.data import TokenizedPair
from dpo_engine.logprobs import SequenceLogps, sequence_logps
from dpo_engine.packing import pack_pairs

PAIRS = [
    TokenizedPair([5, 6, 7], [8, 9, 10, 11], [12, 13]),
    TokenizedPair([14, 15, 16, 17, 18], [19], [20, 21, 22, 23, 24, 25]),
    TokenizedPair([26], [27, 28], [29, 30, 31]),
]


def naive_logps(model, pairs, branch):
    """Full-logits reference: one unpadded forward per sequence, log_softmax over the whole vocabulary."""
    out = []
    for pair in pairs:
        completion = getattr(pair, f"{branch}_ids")
        ids = torch.tensor([pair.prompt_ids + completion])
        logps = model(ids).logits[0, :-1].float().log_softmax(-1)
        targets = ids[0, 1:]
        token_logps = logps.gather(1, targets[:, None]).squeeze(1)
        out.append(token_logps[len(pair.prompt_ids) - 1:].sum())
    return torch.stack(out)


@pytest.mark.parametrize("pack_tokens", [1, 15, 4096])
def test_packed_logps_match_full_logits(make_tiny_model, pack_tokens):
    model = make_tiny_model()
    batch = pack_pairs(PAIRS, pad_token_id=0, pack_tokens=pack_tokens)
    with torch.no_grad():
        packed = sequence_logps(model, batch)
        expected = torch.cat([naive_logps(model, PAIRS, "chosen"), naive_logps(model, PAIRS, "rejected")])
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-4)


def test_packing_fills_rows_longest_first():
    # Runs of 9, 12 and 6 tokens in rows of 15: data order needs three rows, longest-first two.
    batch = pack_pairs(PAIRS, pad_token_id=0, pack_tokens=15)
    assert tuple(batch.input_ids.shape) == (2, 15)


def test_generic_path_matches_fused_path(make_tiny_model):
    model = make_tiny_model()
    batch = pack_pairs(PAIRS, pad_token_id=0)
    with torch.no_grad():
        torch.testing.assert_close(
            sequence_logps(model, batch, fused=True), sequence_logps(model, batch, fused=False), rtol=1e-5, atol=1e-4
        )


def test_fused_head_gradients_match_full_logits(make_tiny_model):
    fused_model, naive_model = make_tiny_model(), make_tiny_model()
    batch = pack_pairs(PAIRS, pad_token_id=0)
    weights = torch.linspace(-1.0, 1.0, 2 * len(PAIRS))
    (SequenceLogps(fused_model, chunk=4)(batch) * weights).sum().backward()
    expected = torch.cat([naive_logps(naive_model, PAIRS, "chosen"), naive_logps(naive_model, PAIRS, "rejected")])
    (expected * weights).sum().backward()
    for (name, p), q in zip(fused_model.named_parameters(), naive_model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_chosen_only_packing_scores_chosen(make_tiny_model):
    model = make_tiny_model()
    batch = pack_pairs(PAIRS, pad_token_id=0, completions="chosen")
    with torch.no_grad():
        torch.testing.assert_close(sequence_logps(model, batch), naive_logps(model, PAIRS, "chosen"), rtol=1e-5,
                                   atol=1e-4)
    assert batch.completion_lengths.tolist() == [4, 1, 2]


def test_empty_prompt_skips_unpredictable_first_token():
    batch = pack_pairs([TokenizedPair([], [1, 2, 3], [4, 5])], pad_token_id=0)
    assert batch.target_ids.tolist() == [2, 3, 5]
    assert batch.segment_ids.tolist() == [0, 0, 1]


def test_rejected_tokens_cannot_see_chosen_tokens():
    batch = pack_pairs([TokenizedPair([1, 2], [3, 4], [5])], pad_token_id=0)
    mask = batch.attention_mask(torch.float32)[0, 0] == 0
    rejected_query = 4
    assert mask[rejected_query].tolist() == [True, True, False, False, True]
    assert batch.position_ids[0].tolist() == [0, 1, 2, 3, 2]
