"""RQ jobs: primitive ids in, one service call. Enqueued by the services after their transaction commits."""

from training import services


def train(run_id: int) -> None:
    services.training_run_execute(run_id=run_id)


def generate(run_id: int) -> None:
    services.generation_run_execute(run_id=run_id)
