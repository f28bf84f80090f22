"""The local distributor: a job's shards on a process pool, with shard retries and a progress bar."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing.queues import Queue
from typing import TYPE_CHECKING

import fsspec.config

from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.redact import redact_text
from v2d_core.runners.events import WorkerEvent
from v2d_core.runners.pool_worker import init_worker, run_shard_in_worker
from v2d_core.runners.progress import FiguresObserver, Progress
from v2d_core.runners.run import RunSummary, portable_job, retry_rounds
from v2d_core.runners.worker_pool import process_context

if TYPE_CHECKING:
    from v2d_core.shards.result import ShardResult


def run_shards(
    specs: list[ShardSpec],
    job: JobConfig,
    show_progress: bool = False,
    observer: FiguresObserver | None = None,
) -> RunSummary:
    """Run ``specs`` on a local process pool (``processes_count`` at once), with shard retries."""
    job = portable_job(job)
    summary = RunSummary()
    total = sum(spec.row_count for spec in specs)
    with Progress(total=total, enabled=show_progress, observer=observer) as progress:
        summary.failed_shards = retry_rounds(
            specs, job.max_shard_retry, lambda remaining: _run_pool(remaining, job, summary, progress)
        )
    summary.error_samples = progress.error_samples
    return summary


def _run_pool(
    specs: list[ShardSpec], job: JobConfig, summary: RunSummary, progress: Progress
) -> dict[int, str]:
    """Run ``specs`` on a process pool; return shard id -> error for those that raised."""
    context = process_context()
    events: Queue[WorkerEvent | None] = context.Queue()
    listener = threading.Thread(target=_relay, args=(events, progress), daemon=True)
    listener.start()
    failures: dict[int, str] = {}
    workers = min(job.config.distribution.processes_count, len(specs))
    try:
        with ProcessPoolExecutor(
            workers,
            mp_context=context,
            initializer=init_worker,
            initargs=(events, dict(os.environ), dict(fsspec.config.conf), os.getpid()),
        ) as pool:
            futures: dict[Future[ShardResult], ShardSpec] = {
                pool.submit(run_shard_in_worker, spec, job): spec for spec in specs
            }
            with _abandon_on_interrupt(pool):
                _collect(futures, summary, failures, progress)
    finally:
        events.put(None)
        listener.join()
    return failures


def _collect(
    futures: dict[Future[ShardResult], ShardSpec],
    summary: RunSummary,
    failures: dict[int, str],
    progress: Progress,
) -> None:
    for future in as_completed(futures):
        spec = futures[future]
        error = future.exception()
        if error is None:
            summary.results.append(future.result())
        else:
            failures[spec.shard_id] = redact_text(f"{type(error).__name__}: {error}")
            progress.shard_failed(spec.shard_id)


@contextlib.contextmanager
def _abandon_on_interrupt(pool: ProcessPoolExecutor) -> Iterator[None]:
    """On Ctrl-C or SIGTERM: start no further shard and abandon the running ones (a worker ends
    with its ffmpeg processes at SIGTERM; commits are atomic, so each shard stays wholly old or
    new), then let the interruption go on."""
    try:
        yield
    except KeyboardInterrupt:
        workers = list(getattr(pool, "_processes", None) or {})  # no public way to reach them
        pool.shutdown(wait=False, cancel_futures=True)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        raise


def _relay(events: Queue[WorkerEvent | None], progress: Progress) -> None:
    while (event := events.get()) is not None:
        progress.handle(event)
