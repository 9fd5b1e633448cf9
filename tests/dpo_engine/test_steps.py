import pytest
import torch
from torch import nn

from dpo_engine.steps import accumulate_gradients, clip_grad_norm, optimizer_step


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def test_micro_batches_give_the_gradient_of_the_mean_loss():
    inputs = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    accumulated, whole = linear(), linear()
    micro_batches = [inputs[:2], inputs[2:4], inputs[4:]]
    accumulate_gradients(accumulated, micro_batches, lambda x: accumulated(x).pow(2).mean(),
                         device=torch.device("cpu"), dtype=torch.float32)
    torch.stack([whole(x).pow(2).mean() for x in micro_batches]).mean().backward()
    for a, b in zip(accumulated.parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_optimizer_step_clips_steps_and_reports_the_norm_before_clipping():
    model = linear()
    start = model.weight.detach().clone()
    model.weight.grad = torch.full_like(model.weight, 3.0)
    model.bias.grad = torch.full_like(model.bias, 4.0)  # global norm: sqrt(3 * 9 + 16) = sqrt(43)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1 * (step + 1))
    grad_norm, learning_rate = optimizer_step(model, optimizer, scheduler, max_grad_norm=1.0)
    assert grad_norm == pytest.approx(43**0.5)
    assert learning_rate == pytest.approx(0.05)  # the rate this step used, before the schedule moved on
    torch.testing.assert_close(model.weight.detach(), start - 0.05 * 3.0 / 43**0.5)
    assert model.weight.grad is None
    assert scheduler.get_last_lr()[0] == pytest.approx(0.1)


def test_a_zero_limit_reports_the_norm_without_clipping():
    model = linear()
    model.weight.grad = torch.full_like(model.weight, 3.0)
    model.bias.grad = torch.full_like(model.bias, 4.0)
    assert clip_grad_norm(model, 0.0) == pytest.approx(43**0.5)
    assert torch.equal(model.weight.grad, torch.full_like(model.weight, 3.0))


def test_weights_give_the_gradient_of_the_mean_over_pairs_of_unequal_micro_batches():
    inputs = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    accumulated, whole = linear(), linear()
    micro_batches = [inputs[:3], inputs[3:]]
    accumulate_gradients(accumulated, micro_batches, lambda x: accumulated(x).pow(2).mean(),
                         device=torch.device("cpu"), dtype=torch.float32, weights=[3 / 5, 2 / 5])
    whole(inputs).pow(2).mean().backward()
    for a, b in zip(accumulated.parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)
