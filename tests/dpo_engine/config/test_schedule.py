import pytest

from dpo_engine.config import SCHEDULE_FIELDS, TrainConfig, resolve_eval_every, resolve_schedule
from dpo_engine.config.schedule import dropped_per_epoch, step_size

PAPER = {"optimizer": "rmsprop", "lr": 1e-6, "warmup_steps": 150, "epochs": 1, "batch_size": 8, "grad_accum": 8}


def shape(schedule):
    return (schedule.regime, schedule.effective_batch, schedule.steps_per_epoch, schedule.total_steps,
            schedule.warmup_steps)


def test_5000_pairs_resolve_to_exactly_the_papers_settings():
    schedule = resolve_schedule(pairs=5000)
    assert schedule.overrides() == PAPER
    assert (schedule.regime, schedule.effective_batch, schedule.steps_per_epoch) == ("paper", 64, 79)


def test_2000_pairs_is_the_first_paper_sized_dataset():
    assert resolve_schedule(pairs=2000).overrides() == PAPER
    assert resolve_schedule(pairs=1999).regime == "small-data"


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        # (regime, effective batch, steps per epoch, total steps, warm-up)
        (4, ("small-data", 4, 1, 3, 1)),
        (36, ("small-data", 4, 9, 27, 3)),
        (64, ("small-data", 8, 8, 24, 2)),
        (500, ("small-data", 32, 16, 48, 5)),
        (1999, ("small-data", 64, 32, 96, 10)),
        (2000, ("paper", 64, 32, 32, 150)),
    ],
)
def test_small_data_schedule(pairs, expected):
    schedule = resolve_schedule(pairs=pairs)
    assert shape(schedule) == expected
    if schedule.regime == "small-data":
        assert (schedule.optimizer, schedule.lr, schedule.epochs) == ("adamw", 5e-6, 3)
        assert schedule.batch_size == min(8, schedule.effective_batch)
        assert schedule.effective_batch == schedule.batch_size * schedule.grad_accum


def test_36_pairs_note_says_why_in_words():
    notes = resolve_schedule(pairs=36).notes
    assert notes[0].startswith("36 pairs < 2000: small-data schedule")
    assert not any("last step takes" in note for note in notes)  # 36 pairs = 9 full steps of 4


def test_fewer_pairs_than_the_smallest_batch_shrink_it_to_the_data():
    schedule = resolve_schedule(pairs=3)
    assert (schedule.batch_size, schedule.grad_accum, schedule.effective_batch, schedule.total_steps) == (3, 1, 3, 3)
    assert any("shrinks to 3" in note for note in schedule.notes)


def test_a_given_field_wins_and_the_rest_follow_it():
    schedule = resolve_schedule(pairs=36, given={"batch_size": 6, "lr": 1e-4, "optimizer": None})
    assert (schedule.batch_size, schedule.lr, schedule.optimizer) == (6, 1e-4, "adamw")
    assert (schedule.grad_accum, schedule.steps_per_epoch, schedule.total_steps) == (1, 6, 18)
    assert any("kept as given: lr=0.0001, batch_size=6" in note for note in schedule.notes)


def test_given_epochs_change_the_small_data_warm_up():
    schedule = resolve_schedule(pairs=64, given={"epochs": 10})
    assert (schedule.total_steps, schedule.warmup_steps) == (80, 8)


def test_given_fields_keep_the_paper_settings_for_the_rest():
    schedule = resolve_schedule(pairs=5000, given={"epochs": 2, "optimizer": "adamw"})
    assert schedule.overrides() == {**PAPER, "epochs": 2, "optimizer": "adamw"}
    assert schedule.total_steps == 158


def test_a_given_batch_larger_than_the_data_takes_every_pair_once_per_step():
    schedule = resolve_schedule(pairs=4, given={"batch_size": 8})
    assert (schedule.effective_batch, schedule.steps_per_epoch) == (8, 1)
    assert any("every pair once" in note for note in schedule.notes)


def test_processes_share_the_effective_batch():
    schedule = resolve_schedule(pairs=5000, world_size=2)
    assert (schedule.batch_size, schedule.grad_accum, schedule.effective_batch) == (8, 4, 64)
    small = resolve_schedule(pairs=36, world_size=2)
    assert (small.batch_size, small.grad_accum, small.effective_batch) == (2, 1, 4)


def test_a_tail_smaller_than_the_process_count_is_left_out_and_said():
    schedule = resolve_schedule(pairs=17, world_size=2, given={"batch_size": 4, "grad_accum": 1})
    assert schedule.steps_per_epoch == 2
    assert any("last 1 pair(s) of each epoch's order are left out" in note for note in schedule.notes)


def test_warm_up_longer_than_the_run_is_said():
    notes = resolve_schedule(pairs=5000).notes
    assert any("rate reaches only 52% of lr" in note for note in notes)


@pytest.mark.parametrize(("pairs", "world_size"), [(0, 1), (1, 2)])
def test_a_run_needs_a_pair_per_process(pairs, world_size):
    with pytest.raises(ValueError, match="at least one per process"):
        resolve_schedule(pairs=pairs, world_size=world_size)


def test_schedule_json_has_every_field_and_the_notes_as_a_list():
    values = resolve_schedule(pairs=36).to_json()
    assert set(SCHEDULE_FIELDS) < set(values)
    assert {"pairs", "world_size", "regime", "effective_batch", "steps_per_epoch", "total_steps"} < set(values)
    assert isinstance(values["notes"], list)


def test_the_schedule_fields_default_to_auto_and_given_values_are_still_checked():
    config = TrainConfig(data="d.jsonl")
    assert all(getattr(config, name) is None for name in SCHEDULE_FIELDS)
    config.validate()
    with pytest.raises(ValueError, match="--batch-size must be at least 1"):
        TrainConfig(data="d.jsonl", batch_size=0).validate()


@pytest.mark.parametrize(
    ("num_pairs", "world_size", "batch_size", "grad_accum", "sizes"),
    [
        (10, 1, 4, 1, [4, 4, 2]),  # the last step takes the remaining 2
        (9, 2, 2, 1, [4, 4]),  # 1 left for 2 processes: left out
        (11, 2, 2, 1, [4, 4, 3]),
        (11, 2, 1, 2, [4, 4, 2]),  # one pair per micro-batch: 3 -> 2, so both processes run as many
    ],
)
def test_step_sizes(num_pairs, world_size, batch_size, grad_accum, sizes):
    shape = {"batch_size": batch_size, "grad_accum": grad_accum, "world_size": world_size}
    found = [step_size(num_pairs, p, **shape) for p in range(6)]
    assert found == sizes + [0] * (6 - len(sizes))
    assert dropped_per_epoch(num_pairs, **shape) == num_pairs - sum(sizes)


def test_eval_every_auto_only_for_runs_of_50_steps_or_more():
    assert resolve_eval_every(None, 49) == 0
    assert resolve_eval_every(None, 50) == 10
    assert resolve_eval_every(None, 500) == 100
    assert resolve_eval_every(0, 500) == 0
    assert resolve_eval_every(7, 20) == 7
