"""The local runner: every shard of a job on a process pool, resumable, with a progress bar."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from typing import TYPE_CHECKING

import fsspec.config

from v2d_core.doctor import log_environment
from v2d_core.job import JobConfig
from v2d_core.lifetime import watch_main_process
from v2d_core.output_lock import LOCK_NAME, output_lock
from v2d_core.progress import ErrorSample, FiguresObserver, Progress, SampleEvent, ShardEvent, WorkerEvent
from v2d_core.redact import redact_text
from v2d_core.sample import Sample
from v2d_core.sharding import ShardSpec, plan_shards
from v2d_core.shards import done_shards
from v2d_core.shards.commit import recover
from v2d_core.storage import fresh_fs
from v2d_core.work_folders import clear_work_folders
from v2d_core.worker_pool import process_context, start_workers_early

if TYPE_CHECKING:
    from v2d_core.shard_result import ShardResult


@dataclass(slots=True)
class RunSummary:
    """What a run did: the shards it finished, those that kept failing, totals over rows."""

    results: list[ShardResult] = field(default_factory=list)
    failed_shards: dict[int, str] = field(default_factory=dict)
    skipped_shards: list[int] = field(default_factory=list)
    seconds: float = 0.0
    error_samples: dict[str, ErrorSample] = field(default_factory=dict)

    @property
    def totals(self) -> Counter[str]:
        """Rows by status over the finished shards."""
        totals: Counter[str] = Counter()
        for result in self.results:
            totals["count"] += result.count
            totals["success"] += result.successes
            totals["failed_to_download"] += result.failed_to_download
            totals["failed_to_subsample"] += result.failed_to_subsample
        return totals


ShardRunner = Callable[[list[ShardSpec], JobConfig, bool, FiguresObserver | None], RunSummary]


def run_job(
    job: JobConfig, show_progress: bool = True, observer: FiguresObserver | None = None
) -> RunSummary:
    """Process every shard of ``job`` that is not done yet; retry failing shards ``max_shard_retry`` times.

    With ``incremental_mode="retry_failed"``, done shards with transient failures are retried too.
    ``observer`` sees the live figures when a shard is committed (and every 30 s).
    """
    started = time.monotonic()
    # A missing extra or an unusable ffmpeg stops the run before the output folder is made.
    log_environment(job.config.reading)
    run = shard_runner(job.config.distribution.distributor)
    if run is run_shards:
        start_workers_early()  # a no-op when the caller started it
    with output_lock(job.output_folder):
        summary = _run_locked(job, run, show_progress, observer)
    summary.seconds = time.monotonic() - started
    return summary


def _run_locked(
    job: JobConfig, run: ShardRunner, show_progress: bool, observer: FiguresObserver | None
) -> RunSummary:
    done = prepare_output(job)
    retried = {}
    if job.incremental_mode == "retry_failed":
        from v2d_core.retry import transient_failures

        retried = transient_failures(job, done)
    skip = done - set(retried)
    shard_dir = f"{job.output_folder}/_tmp"
    try:
        specs = list(plan_shards(job, shard_dir, skip=skip))
        if job.input_format != "webdataset":  # the run's own copy of the rows, credentials whole:
            specs = [dataclasses.replace(s, temporary_input=True) for s in specs]  # gone as each commits
        # A retried shard fetches only its failed rows: that is what the progress bar counts.
        specs = [dataclasses.replace(s, row_count=retried.get(s.shard_id, s.row_count)) for s in specs]
        summary = run(specs, job, show_progress, observer)
    finally:
        fs, path = fresh_fs(shard_dir)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    summary.skipped_shards = sorted(skip)
    return summary


def shard_runner(distributor: str) -> ShardRunner:
    """The function that runs a job's shards with ``distributor``; pyspark is imported only if chosen."""
    if distributor == "pyspark":
        from v2d_core.spark import run_shards_on_spark

        return run_shards_on_spark
    if distributor == "slurm":
        from v2d_core.slurm import run_shards_on_slurm

        return run_shards_on_slurm
    return run_shards


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


def retry_rounds(
    specs: list[ShardSpec], max_retry: int, attempt: Callable[[list[ShardSpec]], dict[int, str]]
) -> dict[int, str]:
    """Run ``attempt`` over ``specs``, then over the shards it failed, ``max_retry`` times at most;
    the shard id -> error of those that failed in the last round."""
    remaining, failures = specs, {}
    for _round in range(1 + max_retry):
        if not remaining:
            break
        failures = attempt(remaining)
        remaining = [spec for spec in remaining if spec.shard_id in failures]
    return failures


def portable_job(job: JobConfig) -> JobConfig:
    """``job`` without the sampler callable, which may not pickle; workers never use it (planning does)."""
    reading = dataclasses.replace(job.config.reading, sampler=None)
    return dataclasses.replace(job, config=dataclasses.replace(job.config, reading=reading))


def prepare_output(job: JobConfig) -> set[int]:
    """Create or wipe the output folder, finish or clear what killed runs left in it; the ids of
    shards already done (their stats exist). Call it only when no other run writes there."""
    fs, root = fresh_fs(job.output_folder)
    if job.incremental_mode == "overwrite" and fs.exists(root):
        for path in fs.ls(root, detail=False):
            if path.rstrip("/").rsplit("/", 1)[-1] != LOCK_NAME:  # the lock this run holds
                fs.rm(path, recursive=True)
    fs.makedirs(root, exist_ok=True)
    recover(job.output_folder)
    clear_work_folders(job)
    return done_shards(job.output_folder)


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
            initializer=_init_worker,
            initargs=(events, dict(os.environ), dict(fsspec.config.conf), os.getpid()),
        ) as pool:
            futures: dict[Future[ShardResult], ShardSpec] = {
                pool.submit(_run_shard, spec, job): spec for spec in specs
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


_events: Queue[WorkerEvent | None] | None = None


def _init_worker(
    events: Queue[WorkerEvent | None], environ: dict[str, str], fsspec_conf: dict[str, dict], main_pid: int
) -> None:
    """Hand the worker the progress queue, and the caller's environment and fsspec config as they
    are now: the forkserver it comes from may have started earlier, with older storage endpoints
    and credentials. The worker ends when the run's main process does."""
    global _events
    watch_main_process(main_pid)
    _events = events
    os.environ.clear()
    os.environ.update(environ)
    fsspec.config.conf.clear()
    fsspec.config.conf.update(fsspec_conf)


def _run_shard(spec: ShardSpec, job: JobConfig) -> ShardResult:
    def report(sample: Sample, downloaded: int) -> None:
        if _events is not None:
            _events.put(SampleEvent.of(spec.shard_id, sample, downloaded))

    from v2d_core.retry import process_or_retry  # preloaded by the forkserver

    result = process_or_retry(spec, job, on_sample=report)
    if _events is not None:
        _events.put(ShardEvent(spec.shard_id))
    return result
