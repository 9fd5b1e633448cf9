"""What a worker does with a run it takes from the queue (``training.jobs`` calls these)."""

from training.services.worker.generation_job import generation_run_execute, generation_shard_execute
from training.services.worker.training_job import training_run_execute

__all__ = ["generation_run_execute", "generation_shard_execute", "training_run_execute"]
