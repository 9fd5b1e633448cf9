"""Preference losses, each a small pure function of summed sequence log-probabilities.

Every loss takes a ``LossInputs`` and returns per-example losses of shape ``[B]``; ``compute_loss`` averages them
over the batch and sums the weighted means, exactly as TRL 1.16's ``DPOTrainer`` does. Formulas follow TRL 1.16
(``trl/trainer/dpo_trainer.py``) with the standard reverse-KL scores (``policy - ref`` log-ratios). The one
deliberate difference: ``sigmoid`` applies conservative-DPO label smoothing (TRL 1.16 ignores ``label_smoothing``
there); with the default ``label_smoothing=0`` it equals TRL's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class LossInputs:
    """Per-pair quantities, all ``[B]`` tensors on the same device (lengths may be integer tensors)."""

    policy_chosen_logps: Tensor  # [B] summed log-probs of the chosen completion's tokens under the policy
    policy_rejected_logps: Tensor  # [B] same for the rejected completion
    ref_chosen_logps: Tensor  # [B] summed log-probs of the chosen completion under the reference model
    ref_rejected_logps: Tensor  # [B] same for the rejected completion
    chosen_lengths: Tensor  # [B] completion token counts of the chosen completions
    rejected_lengths: Tensor  # [B] completion token counts of the rejected completions
    beta: float  # strength of the KL regularisation (tau for IPO)
    label_smoothing: float = 0.0  # probability that a label is flipped (cDPO, robust DPO)

    @property
    def chosen_logratios(self) -> Tensor:  # [B]
        return self.policy_chosen_logps - self.ref_chosen_logps

    @property
    def rejected_logratios(self) -> Tensor:  # [B]
        return self.policy_rejected_logps - self.ref_rejected_logps

    @property
    def delta(self) -> Tensor:  # [B] implicit reward margin over beta: (pi_c - ref_c) - (pi_r - ref_r)
        return self.chosen_logratios - self.rejected_logratios

    def length_normalized_delta(self) -> Tensor:  # [B] per-token log-ratios' difference, lengths clamped to >= 1
        chosen = self.chosen_logratios / self.chosen_lengths.to(self.chosen_logratios.dtype).clamp(min=1.0)
        rejected = self.rejected_logratios / self.rejected_lengths.to(self.rejected_logratios.dtype).clamp(min=1.0)
        return chosen - rejected


def sigmoid_loss(x: LossInputs) -> Tensor:
    """DPO (Rafailov et al. 2023); with label smoothing eps, conservative DPO: the label is wrong with prob. eps."""
    logits = x.beta * x.delta
    return -(1 - x.label_smoothing) * F.logsigmoid(logits) - x.label_smoothing * F.logsigmoid(-logits)


def hinge_loss(x: LossInputs) -> Tensor:
    """SLiC hinge: relu(1 - beta * delta)."""
    return torch.relu(1 - x.beta * x.delta)


def ipo_loss(x: LossInputs) -> Tensor:
    """IPO (Azar et al. 2023, eq. 17) on per-token averaged log-ratios, as TRL does: (delta_avg - 1/(2 beta))^2."""
    return (x.length_normalized_delta() - 1 / (2 * x.beta)) ** 2


def robust_loss(x: LossInputs) -> Tensor:
    """Robust DPO (Chowdhury et al. 2024): unbiased under label flips with probability eps in [0, 0.5)."""
    logits = x.beta * x.delta
    eps = x.label_smoothing
    return (-(1 - eps) * F.logsigmoid(logits) + eps * F.logsigmoid(-logits)) / (1 - 2 * eps)


def sppo_hard_loss(x: LossInputs) -> Tensor:
    """SPPO with hard win probabilities: pull chosen log-ratio to 1/(2 beta), rejected to -1/(2 beta)."""
    return (x.chosen_logratios - 0.5 / x.beta) ** 2 + (x.rejected_logratios + 0.5 / x.beta) ** 2


def nca_pair_loss(x: LossInputs) -> Tensor:
    """NCA (Chen et al. 2024), pairwise: raise the chosen reward in absolute terms, push both away from +inf."""
    chosen = x.beta * x.chosen_logratios
    rejected = x.beta * x.rejected_logratios
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


def apo_zero_loss(x: LossInputs) -> Tensor:
    """APO-zero (D'Oosterlinck et al. 2024, eq. 7): raise chosen likelihood, lower rejected likelihood."""
    return 1 - torch.sigmoid(x.beta * x.chosen_logratios) + torch.sigmoid(x.beta * x.rejected_logratios)


def sigmoid_norm_loss(x: LossInputs) -> Tensor:
    """Length-normalised DPO (SimPO-style averaging, reference kept): -logsigmoid(beta * delta_avg)."""
    return -F.logsigmoid(x.beta * x.length_normalized_delta())


LOSSES: dict[str, Callable[[LossInputs], Tensor]] = {
    "sigmoid": sigmoid_loss,
    "ipo": ipo_loss,
    "hinge": hinge_loss,
    "robust": robust_loss,
    "sppo_hard": sppo_hard_loss,
    "nca_pair": nca_pair_loss,
    "apo_zero": apo_zero_loss,
    "sigmoid_norm": sigmoid_norm_loss,
}


def validate_loss_types(loss_types: Sequence[str], loss_weights: Sequence[float] | None = None) -> None:
    """Raise ``ValueError`` for an unknown loss name or a weights list whose length does not match."""
    if isinstance(loss_types, str):
        raise ValueError(f"loss_types must be a sequence of names, not the string {loss_types!r}")
    if not loss_types:
        raise ValueError(f"no loss type given; known: {', '.join(LOSSES)}")
    unknown = [name for name in loss_types if name not in LOSSES]
    if unknown:
        raise ValueError(f"unknown loss type(s) {', '.join(map(repr, unknown))}; known: {', '.join(LOSSES)}")
    if loss_weights is not None and len(loss_weights) != len(loss_types):
        raise ValueError(f"{len(loss_weights)} loss weights given for {len(loss_types)} loss types {list(loss_types)}")


def compute_loss(inputs: LossInputs, loss_types: Sequence[str], loss_weights: Sequence[float] | None = None) -> Tensor:
    """Scalar: sum over ``loss_types`` of weight * batch mean of that loss (weights default to 1)."""
    validate_loss_types(loss_types, loss_weights)
    if "robust" in loss_types and not 0.0 <= inputs.label_smoothing < 0.5:
        raise ValueError(f"the robust loss needs label_smoothing in [0, 0.5), got {inputs.label_smoothing}")
    weights = loss_weights if loss_weights is not None else [1.0] * len(loss_types)
    total = torch.zeros((), dtype=inputs.policy_chosen_logps.dtype, device=inputs.policy_chosen_logps.device)
    for name, weight in zip(loss_types, weights, strict=True):
        total = total + LOSSES[name](inputs).mean() * weight
    return total


def rewards(inputs: LossInputs) -> tuple[Tensor, Tensor]:
    """Implicit rewards ``beta * (policy - ref)`` of the chosen and rejected completions, ``[B]`` each, detached."""
    return (inputs.beta * inputs.chosen_logratios).detach(), (inputs.beta * inputs.rejected_logratios).detach()
