"""A run of a job: its output folder prepared and locked, its shards planned and handed to a distributor."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from v2d_core.doctor import log_environment
from v2d_core.inputs.sharding import ShardSpec, plan_shards
from v2d_core.job import JobConfig
from v2d_core.runners.output_lock import LOCK_NAME, output_lock
from v2d_core.runners.progress import (
    ErrorSample,
    FiguresObserver,
)
from v2d_core.runners.worker_pool import start_workers_early
from v2d_core.shards import done_shards
from v2d_core.shards.commit import recover
from v2d_core.shards.work_folders import clear_work_folders
from v2d_core.storage import fresh_fs

if TYPE_CHECKING:
    from v2d_core.shards.result import ShardResult


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
    if job.config.distribution.distributor == "multiprocessing":
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
        from v2d_core.shards.retry import transient_failures

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
        from v2d_core.runners.spark import run_shards_on_spark

        return run_shards_on_spark
    if distributor == "slurm":
        from v2d_core.runners.slurm import run_shards_on_slurm

        return run_shards_on_slurm
    from v2d_core.runners.local import run_shards

    return run_shards


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
