"""A generation round's shards: planned by the round's first job, taken by workers, closed by the last to end.

Every change of a shard's status happens with its round's row locked (``SELECT … FOR UPDATE``), always
the round's row first and the shard's second, and the shard that ends last closes the round in that same
transaction: two shards that end together queue on the round's lock, and the second one finds the round
closed already, so a round is closed once.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from config.queues import GPU_QUEUE, QueueUnavailable, enqueue_on_commit
from training.models import GenerationRun, GenerationShard, RunStatus
from training.services.worker.runtime import log_tail_append

# Workers a shard may lose before it fails the round: a shard that kills its worker every time (out of
# memory on one huge prompt) must not be handed from host to host forever. The one home of that limit.
SHARD_ATTEMPTS = 3

UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING)

# The most shard errors a closed round names in its own error; the shards table lists them all.
ERRORS_NAMED = 3


def generation_shards_create(*, run: GenerationRun, groups: list[list[int]]) -> list[GenerationShard]:
    """Replace the round's shards that did not succeed by one shard per group of prompt ids, each queued
    once the transaction commits. The caller holds the round's row lock."""
    GenerationShard.objects.filter(run=run).exclude(status=RunStatus.SUCCEEDED).delete()
    first = (GenerationShard.objects.filter(run=run).aggregate(last=Max("index"))["last"] or -1) + 1
    shards = GenerationShard.objects.bulk_create(
        GenerationShard(run=run, index=first + offset, prompt_ids=ids) for offset, ids in enumerate(groups)
    )
    for shard in shards:
        _enqueue(shard)
    return shards


def _enqueue(shard: GenerationShard) -> None:
    from training import jobs

    def enqueued(rq_job_id: str) -> None:
        GenerationShard.objects.filter(pk=shard.pk).update(rq_job_id=rq_job_id)

    enqueue_on_commit(
        job=jobs.generate_shard,
        args=(shard.pk,),
        queue=GPU_QUEUE,
        on_enqueued=enqueued,
        on_failure=lambda: _unqueued_fail(run_id=shard.run_id),
    )


def _unqueued_fail(*, run_id: int) -> None:
    """Fail the round's shards that never reached Redis (after the first failure the rest are never tried)."""
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run_id)
        GenerationShard.objects.filter(run=run, status=RunStatus.QUEUED, rq_job_id="").update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error="Redis could not be reached to queue it"
        )
        round_close_if_done(run=run)


def generation_shard_claim(*, shard_id: int, worker_name: str, host: str) -> GenerationShard | None:
    """Move a queued shard to running for this worker (one more attempt); None if it was cancelled or taken."""
    now = timezone.now()
    claimed = GenerationShard.objects.filter(pk=shard_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, attempts=F("attempts") + 1, worker_name=worker_name[:200], host=host[:200],
        started_at=now, heartbeat_at=now, finished_at=None, error="",
    )
    if not claimed:
        return None
    return GenerationShard.objects.select_related("run__model_version__parent", "run__campaign").get(pk=shard_id)


def generation_shard_finish(*, shard: GenerationShard, status: str, error: str = "", traceback: str = "") -> bool:
    """End this attempt at ``shard`` and close the round when no shard is left to run.

    False when the attempt no longer owns the shard (it was given to another worker meanwhile).
    """
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=shard.run_id)
        ended = GenerationShard.objects.filter(pk=shard.pk, status=RunStatus.RUNNING, attempts=shard.attempts).update(
            status=status, finished_at=timezone.now(), error=error
        )
        if ended and traceback:
            GenerationRun.objects.filter(pk=run.pk).update(traceback=traceback)
        if ended:
            round_close_if_done(run=run)
    return bool(ended)


def generation_shards_cancel(*, run: GenerationRun) -> None:
    """Cancel the shards no worker has taken, and close the round if none is running; running shards stop
    between two chunks and close it."""
    with transaction.atomic():
        locked = GenerationRun.objects.select_for_update().get(pk=run.pk)
        GenerationShard.objects.filter(run=locked, status=RunStatus.QUEUED).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now(), error="cancelled before a worker took it"
        )
        round_close_if_done(run=locked)


def round_close_if_done(*, run: GenerationRun) -> None:
    """Close a running round none of whose shards is queued or running: failed when a shard failed (naming
    it), cancelled when asked, else succeeded. The caller holds the round's row lock."""
    if run.status != RunStatus.RUNNING:
        return
    shards = list(GenerationShard.objects.filter(run=run).values_list("index", "status", "error"))
    if any(status in UNFINISHED for _, status, _ in shards):
        return
    failed = [f"shard {index}: {error}" for index, status, error in shards if status == RunStatus.FAILED]
    if failed:
        more = " …" if len(failed) > ERRORS_NAMED else ""
        status, error = RunStatus.FAILED, "; ".join(failed[:ERRORS_NAMED]) + more
    elif run.cancel_requested or any(status == RunStatus.CANCELLED for _, status, _ in shards):
        status, error = RunStatus.CANCELLED, "cancelled from the page"
    else:
        status, error = RunStatus.SUCCEEDED, ""
    done = sum(1 for _, shard_status, _ in shards if shard_status == RunStatus.SUCCEEDED)
    run.log_tail = log_tail_append(run.log_tail, f"round closed: {status}, {done} of {len(shards)} shard(s) succeeded")
    run.status = status
    GenerationRun.objects.filter(pk=run.pk).update(
        status=status, error=error, finished_at=timezone.now(), log_tail=run.log_tail
    )


def generation_shards_reap_stale(*, cutoff: datetime) -> int:
    """Give the shards whose worker stopped beating before ``cutoff`` to another worker; return how many.

    What the lost worker stored stays (a chunk is stored whole or not at all), and the next attempt answers
    only the rest. After ``SHARD_ATTEMPTS`` lost workers, or when the round is being cancelled, the shard
    ends instead (failed, cancelled) and may close the round.
    """
    stale = GenerationShard.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff)
    if not stale.exists():
        return 0
    reaped = 0
    for shard_id, run_id in stale.values_list("pk", "run_id"):
        try:
            reaped += _shard_reap(shard_id=shard_id, run_id=run_id, cutoff=cutoff)
        except QueueUnavailable:
            reaped += 1  # it could not be queued again: failed, and the round closed if it was the last
    return reaped


def _shard_reap(*, shard_id: int, run_id: int, cutoff: datetime) -> int:
    with transaction.atomic():
        run = GenerationRun.objects.select_for_update().get(pk=run_id)
        shard = GenerationShard.objects.filter(pk=shard_id, status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).first()
        if shard is None:
            return 0  # it beat, or another reaper took it, while this one waited for the lock
        lost = (
            f"lost its worker {shard.worker_name or '?'} on {shard.host or '?'} "
            f"(no heartbeat for {settings.DUET_HEARTBEAT_TIMEOUT:g} s)"
        )
        line = f"shard {shard.index} {lost}"
        now = timezone.now()
        shards = GenerationShard.objects.filter(pk=shard.pk)
        if run.status != RunStatus.RUNNING or run.cancel_requested:
            shards.update(status=RunStatus.CANCELLED, finished_at=now, error=lost)
        elif shard.attempts < SHARD_ATTEMPTS:
            shards.update(status=RunStatus.QUEUED, rq_job_id="", heartbeat_at=None)
            _enqueue(shard)
            line += f"; queued again (attempt {shard.attempts + 1} of {SHARD_ATTEMPTS})"
        else:
            shards.update(status=RunStatus.FAILED, finished_at=now, error=f"{lost}, {shard.attempts} times")
            line += f"; {SHARD_ATTEMPTS} workers lost, it fails the round"
        run.log_tail = log_tail_append(run.log_tail, line)
        GenerationRun.objects.filter(pk=run.pk).update(log_tail=run.log_tail)
        round_close_if_done(run=run)
    return 1
