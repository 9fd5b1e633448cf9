import pytest

from dpo_engine.config.schedule import dropped_per_epoch, steps_per_epoch
from dpo_engine.schedule import epoch_order, step_micro_batches, step_pairs


def epoch(num_pairs, *, batch_size, grad_accum, world_size, seed=0, number=0):
    """Every process's micro-batches of every step of one epoch: ``steps[position][rank]``."""
    order = epoch_order(num_pairs, seed, number)
    shape = {"batch_size": batch_size, "grad_accum": grad_accum, "world_size": world_size}
    per_epoch = steps_per_epoch(num_pairs, batch_size * grad_accum * world_size, world_size)
    return [[step_micro_batches(order, position, rank=rank, **shape) for rank in range(world_size)]
            for position in range(per_epoch)]


@pytest.mark.parametrize(
    ("num_pairs", "batch_size", "grad_accum"), [(36, 4, 1), (10, 4, 1), (13, 2, 4), (4, 8, 1), (64, 8, 8)]
)
def test_one_process_sees_every_pair_exactly_once_per_epoch(num_pairs, batch_size, grad_accum):
    order = epoch_order(num_pairs, 0, 0)
    shape = {"batch_size": batch_size, "grad_accum": grad_accum, "rank": 0, "world_size": 1}
    per_epoch = steps_per_epoch(num_pairs, batch_size * grad_accum)
    seen = [i for position in range(per_epoch) for i in step_pairs(order, position, **shape)]
    assert sorted(seen) == list(range(num_pairs))


def test_the_last_step_is_smaller_instead_of_repeating_pairs():
    steps = epoch(10, batch_size=4, grad_accum=1, world_size=1)
    assert [len(step[0][0]) for step in steps] == [4, 4, 2]


def test_a_smaller_last_step_splits_into_near_equal_micro_batches():
    # 6 pairs left for micro-batches of at most 4: two of 3, not 4 and 2.
    steps = epoch(14, batch_size=4, grad_accum=2, world_size=1)
    assert [[len(m) for m in step[0]] for step in steps] == [[4, 4], [3, 3]]


@pytest.mark.parametrize(
    ("num_pairs", "batch_size", "grad_accum"), [(17, 4, 1), (17, 2, 2), (11, 1, 2), (9, 8, 1), (3, 4, 1), (33, 4, 2)]
)
def test_two_processes_with_an_odd_count(num_pairs, batch_size, grad_accum):
    steps = epoch(num_pairs, batch_size=batch_size, grad_accum=grad_accum, world_size=2)
    for step in steps:
        # Same number of forward passes on every process (at least one), none empty, none above the batch size.
        assert len(step[0]) == len(step[1]) >= 1
        assert all(1 <= len(micro) <= batch_size for share in step for micro in share)
        sizes = [sum(map(len, share)) for share in step]
        assert max(sizes) - min(sizes) <= 1
    seen = [i for step in steps for share in step for micro in share for i in micro]
    assert len(seen) == len(set(seen))  # nothing repeated
    shape = {"batch_size": batch_size, "grad_accum": grad_accum, "world_size": 2}
    assert len(seen) == num_pairs - dropped_per_epoch(num_pairs, **shape)
    assert dropped_per_epoch(num_pairs, **shape) <= 1


def test_two_processes_match_one_process_accumulating_on_full_steps():
    one = epoch(16, batch_size=4, grad_accum=2, world_size=1)
    two = epoch(16, batch_size=4, grad_accum=1, world_size=2)
    assert [step[0] for step in one] == [[step[0][0], step[1][0]] for step in two]


def test_the_left_out_pair_changes_with_the_epoch():
    left_out = set()
    for number in range(4):
        steps = epoch(17, batch_size=4, grad_accum=1, world_size=2, number=number)
        seen = {i for step in steps for share in step for micro in share for i in micro}
        left_out |= set(range(17)) - seen
    assert len(left_out) > 1
