"""Each loss against its formula written out here in plain float64 math, then against TRL 1.16's own code."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from dpo_engine.config import LOSS_NAMES
from dpo_engine.losses import LOSSES, LossInputs, compute_loss, rewards

POLICY_CHOSEN = [-10.0, -20.5, -3.0]
POLICY_REJECTED = [-12.0, -19.0, -7.5]
REF_CHOSEN = [-11.0, -20.0, -4.0]
REF_REJECTED = [-11.5, -19.5, -6.0]
CHOSEN_LENGTHS = [4, 10, 0]  # 0 checks the clamp to 1 in the length-normalised losses
REJECTED_LENGTHS = [5, 8, 3]


def log_sigmoid(z: float) -> float:
    return -math.log1p(math.exp(-z))


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def hand_inputs(beta: float, label_smoothing: float = 0.0) -> LossInputs:
    t = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    return LossInputs(
        policy_chosen_logps=t(POLICY_CHOSEN),
        policy_rejected_logps=t(POLICY_REJECTED),
        ref_chosen_logps=t(REF_CHOSEN),
        ref_rejected_logps=t(REF_REJECTED),
        chosen_lengths=torch.tensor(CHOSEN_LENGTHS),
        rejected_lengths=torch.tensor(REJECTED_LENGTHS),
        beta=beta,
        label_smoothing=label_smoothing,
    )


def expected(name: str, beta: float, eps: float) -> list[float]:
    out = []
    for pc, pr, rc, rr, lc, lr in zip(
        POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED, CHOSEN_LENGTHS, REJECTED_LENGTHS, strict=True
    ):
        c, r = pc - rc, pr - rr  # log-ratios
        z = beta * (c - r)
        avg = c / max(lc, 1) - r / max(lr, 1)
        out.append(
            {
                "sigmoid": -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z),
                "hinge": max(0.0, 1 - z),
                "ipo": (avg - 1 / (2 * beta)) ** 2,
                "robust": (-(1 - eps) * log_sigmoid(z) + eps * log_sigmoid(-z)) / (1 - 2 * eps),
                "sppo_hard": (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2,
                "nca_pair": -log_sigmoid(beta * c) - 0.5 * log_sigmoid(-beta * c) - 0.5 * log_sigmoid(-beta * r),
                "apo_zero": (1 - sigmoid(beta * c)) + sigmoid(beta * r),
                "sigmoid_norm": -log_sigmoid(beta * avg),
            }[name]
        )
    return out


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize(("beta", "eps"), [(0.1, 0.0), (0.5, 0.2)])
def test_loss_matches_its_formula(name, beta, eps):
    got = LOSSES[name](hand_inputs(beta, eps))
    assert got.shape == (3,)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(expected(name, beta, eps), dtype=torch.float64), rtol=1e-12, atol=0)


def test_registry_holds_the_trl_names():
    assert set(LOSSES) == {"sigmoid", "ipo", "hinge", "robust", "sppo_hard", "nca_pair", "apo_zero", "sigmoid_norm"}


def test_config_validates_against_the_registrys_names():
    assert set(LOSS_NAMES) == set(LOSSES)
    assert len(LOSS_NAMES) == len(LOSSES)


def test_compute_loss_is_the_weighted_sum_of_batch_means():
    got = compute_loss(hand_inputs(0.1), ["sigmoid", "ipo"], [0.8, 0.2])
    want = 0.8 * sum(expected("sigmoid", 0.1, 0.0)) / 3 + 0.2 * sum(expected("ipo", 0.1, 0.0)) / 3
    assert got.ndim == 0
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_compute_loss_weights_default_to_one():
    got = compute_loss(hand_inputs(0.1), ["hinge", "apo_zero"])
    want = sum(expected("hinge", 0.1, 0.0)) / 3 + sum(expected("apo_zero", 0.1, 0.0)) / 3
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_unknown_loss_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown loss type.*'dpo'.*known: sigmoid, ipo"):
        compute_loss(hand_inputs(0.1), ["sigmoid", "dpo"])


def test_mismatched_weights_are_rejected():
    with pytest.raises(ValueError, match=r"1 loss weights given for 2 loss types"):
        compute_loss(hand_inputs(0.1), ["sigmoid", "ipo"], [1.0])


def test_robust_rejects_label_smoothing_of_one_half():
    with pytest.raises(ValueError, match=r"label_smoothing in \[0, 0.5\)"):
        compute_loss(hand_inputs(0.1, 0.5), ["robust"])


def test_rewards_are_beta_times_log_ratios_and_detached():
    inputs = hand_inputs(0.1)
    inputs.policy_chosen_logps.requires_grad_(True)
    chosen, rejected = rewards(inputs)
    assert not chosen.requires_grad
    want_chosen = [0.1 * (p - r) for p, r in zip(POLICY_CHOSEN, REF_CHOSEN, strict=True)]
    want_rejected = [0.1 * (p - r) for p, r in zip(POLICY_REJECTED, REF_REJECTED, strict=True)]
    torch.testing.assert_close(chosen, torch.tensor(want_chosen, dtype=torch.float64))
    torch.testing.assert_close(rejected, torch.tensor(want_rejected, dtype=torch.float64))


def test_sigmoid_loss_gradient_raises_chosen_and_lowers_rejected():
    inputs = hand_inputs(0.1)
    inputs.policy_chosen_logps.requires_grad_(True)
    inputs.policy_rejected_logps.requires_grad_(True)
    compute_loss(inputs, ["sigmoid"]).backward()
    assert (inputs.policy_chosen_logps.grad < 0).all()
    assert (inputs.policy_rejected_logps.grad > 0).all()


# --- TRL 1.16's own loss code -------------------------------------------------------------------------------------


def random_pair_batch(pairs: int, vocab: int, seed: int) -> dict[str, torch.Tensor]:
    """Right-padded [chosen..., rejected...] rows, as TRL's collator lays them out."""
    g = torch.Generator().manual_seed(seed)
    prompt_lens = torch.randint(2, 6, (pairs,), generator=g).repeat(2)  # a pair shares its prompt length
    completion_lens = torch.randint(1, 9, (2 * pairs,), generator=g)
    width = int((prompt_lens + completion_lens).max())
    input_ids = torch.zeros(2 * pairs, width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    completion_mask = torch.zeros_like(input_ids)
    for row, (p, c) in enumerate(zip(prompt_lens.tolist(), completion_lens.tolist(), strict=True)):
        input_ids[row, : p + c] = torch.randint(3, vocab, (p + c,), generator=g)
        attention_mask[row, : p + c] = 1
        completion_mask[row, p : p + c] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": completion_mask,
        "ref_chosen_logps": -30 * torch.rand(pairs, generator=g) - 1,
        "ref_rejected_logps": -30 * torch.rand(pairs, generator=g) - 1,
    }


def trl_loss(model, batch, loss_types, loss_weights, beta, label_smoothing) -> torch.Tensor:
    """TRL's ``DPOTrainer._compute_loss`` on a real model, ``self`` reduced to the attributes that method reads
    (one process: gathers are identities; reference log-probs precomputed, so no reference model)."""
    from trl import DPOTrainer

    trainer = SimpleNamespace(
        model=model,
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather=lambda t: t, gather_for_metrics=lambda t: t),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=list(loss_types),
        loss_weights=list(loss_weights),
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
        args=SimpleNamespace(discopop_tau=0.05),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
    )
    with torch.no_grad():
        return DPOTrainer._compute_loss(trainer, model, dict(batch), return_outputs=False)


def our_inputs(model, batch, beta, label_smoothing) -> LossInputs:
    """Summed completion log-probs from plain logits, independently of TRL's fused head."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    token_logps = logps.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    mask = batch["completion_mask"][:, 1:]
    summed = (token_logps * mask).sum(dim=1).float()
    chosen, rejected = summed.chunk(2)
    chosen_lengths, rejected_lengths = batch["completion_mask"].sum(dim=1).chunk(2)
    return LossInputs(
        policy_chosen_logps=chosen,
        policy_rejected_logps=rejected,
        ref_chosen_logps=batch["ref_chosen_logps"],
        ref_rejected_logps=batch["ref_rejected_logps"],
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        beta=beta,
        label_smoothing=label_smoothing,
    )


@pytest.fixture
def trl_model(make_tiny_model):
    from trl.trainer.utils import add_fused_lm_head

    model = make_tiny_model(seed=3)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    return model


@pytest.mark.parametrize(
    ("loss_types", "loss_weights", "beta", "label_smoothing"),
    [
        *[([name], [1.0], 0.1, 0.0) for name in sorted(LOSSES)],
        (["robust"], [1.0], 0.3, 0.2),
        (["sigmoid", "sigmoid_norm", "ipo", "nca_pair"], [0.5, 1.5, 0.1, 2.0], 0.2, 0.0),
    ],
)
def test_matches_trl_dpo_trainer_loss(trl_model, loss_types, loss_weights, beta, label_smoothing):
    batch = random_pair_batch(pairs=4, vocab=trl_model.config.vocab_size, seed=len(loss_types) + int(10 * beta))
    want = trl_loss(trl_model, batch, loss_types, loss_weights, beta, label_smoothing)
    got = compute_loss(our_inputs(trl_model, batch, beta, label_smoothing), loss_types, loss_weights)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
