"""Every write of the training app, split by who runs it.

- ``control``: what the web, the API and the commands do (start, cancel, resume, next round).
- ``worker``: what an RQ worker does with a run it takes (execute, heartbeat, progress).
- ``versions``: model versions, registered by hand or by a finished run through one function.
- ``evaluation_round``: a version against its parent on the prompts kept for evaluation.
- ``queueing``: Redis checks and enqueueing after commit.
"""

from training.services.control import (
    RunStateError,
    generation_run_observe,
    generation_run_resume,
    generation_run_start,
    generation_run_start_anyway,
    next_round_start,
    runs_reap_stale,
    training_run_cancel,
    training_run_observe,
    training_run_resume,
    training_run_start,
)
from training.services.evaluation_round import evaluation_round_start
from training.services.queueing import QueueUnavailable
from training.services.versions import (
    default_model_version,
    latest_model_version,
    model_version_local_path,
    model_version_register,
)
from training.services.worker import generation_run_execute, generation_shard_execute, training_run_execute

__all__ = [
    "QueueUnavailable",
    "RunStateError",
    "default_model_version",
    "evaluation_round_start",
    "generation_run_execute",
    "generation_run_observe",
    "generation_run_resume",
    "generation_run_start",
    "generation_run_start_anyway",
    "generation_shard_execute",
    "latest_model_version",
    "model_version_local_path",
    "model_version_register",
    "next_round_start",
    "runs_reap_stale",
    "training_run_cancel",
    "training_run_execute",
    "training_run_observe",
    "training_run_resume",
    "training_run_start",
]
