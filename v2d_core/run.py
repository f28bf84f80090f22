"""The local runner: every shard of a job on a process pool, resumable, with a progress bar."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing.queues import Queue

import fsspec

from v2d_core.fetch.webdataset import tar_shards
from v2d_core.job import JobConfig
from v2d_core.progress import Progress
from v2d_core.redact import redact_text
from v2d_core.sample import Sample
from v2d_core.shard import ShardResult, process_shard
from v2d_core.sharding import ShardSpec, plan_shards
from v2d_core.writers.status import remove_temporaries

STATS_SUFFIX = "_stats.json"


@dataclass(slots=True)
class RunSummary:
    """What a run did: the shards it finished, those that kept failing, totals over rows."""

    results: list[ShardResult] = field(default_factory=list)
    failed_shards: dict[int, str] = field(default_factory=dict)
    skipped_shards: list[int] = field(default_factory=list)

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


def run_job(job: JobConfig, show_progress: bool = True) -> RunSummary:
    """Process every shard of ``job`` that is not done yet; retry failing shards ``max_shard_retry`` times."""
    done = prepare_output(job)
    shard_dir = f"{job.output_folder}/_tmp"
    try:
        if job.input_format == "webdataset":
            specs = tar_shards(job.url_list, skip=done)
        else:
            specs = list(plan_shards(job, shard_dir, skip=done))
        summary = run_shards(specs, job, show_progress)
    finally:
        fs, path = fsspec.core.url_to_fs(shard_dir)
        if fs.exists(path):
            fs.rm(path, recursive=True)
    summary.skipped_shards = sorted(done)
    return summary


def run_shards(specs: list[ShardSpec], job: JobConfig, show_progress: bool = False) -> RunSummary:
    """Run ``specs`` on a local process pool (``processes_count`` at once), with shard retries."""
    # Children get the job without the (possibly unpicklable) sampler callable.
    job = dataclasses.replace(
        job,
        config=dataclasses.replace(job.config, reading=dataclasses.replace(job.config.reading, sampler=None)),
    )
    summary = RunSummary()
    remaining = specs
    with Progress(total=sum(spec.row_count for spec in specs), enabled=show_progress) as progress:
        for _attempt in range(1 + job.max_shard_retry):
            if not remaining:
                break
            failures = _run_pool(remaining, job, summary, progress)
            remaining = [spec for spec in remaining if spec.shard_id in failures]
            summary.failed_shards = failures
    return summary


def prepare_output(job: JobConfig) -> set[int]:
    """Create or wipe the output folder; the ids of shards already done (their stats exist)."""
    fs, root = fsspec.core.url_to_fs(job.output_folder)
    if job.incremental_mode == "overwrite" and fs.exists(root):
        fs.rm(root, recursive=True)
    fs.makedirs(root, exist_ok=True)
    remove_temporaries(job.output_folder)
    done = set()
    for path in fs.glob(f"{root}/*{STATS_SUFFIX}"):
        name = path.rsplit("/", 1)[-1].removesuffix(STATS_SUFFIX)
        if name.isdigit():
            done.add(int(name))
    return done


def _run_pool(
    specs: list[ShardSpec], job: JobConfig, summary: RunSummary, progress: Progress
) -> dict[int, str]:
    """Run ``specs`` on a process pool; return shard id -> error for those that raised."""
    context = _process_context()
    events: Queue[tuple[int, str] | None] = context.Queue()
    listener = threading.Thread(target=_relay, args=(events, progress), daemon=True)
    listener.start()
    failures: dict[int, str] = {}
    workers = min(job.config.distribution.processes_count, len(specs))
    try:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(events,)
        ) as pool:
            futures: dict[Future[ShardResult], ShardSpec] = {
                pool.submit(_run_shard, spec, job): spec for spec in specs
            }
            for future in as_completed(futures):
                spec = futures[future]
                error = future.exception()
                if error is None:
                    summary.results.append(future.result())
                else:
                    failures[spec.shard_id] = redact_text(f"{type(error).__name__}: {error}")
                    progress.shard_failed(spec.shard_id)
    finally:
        events.put(None)
        listener.join()
    return failures


def _process_context() -> multiprocessing.context.BaseContext:
    """forkserver with the engine preloaded (workers start without re-importing it), else spawn.

    Never plain fork: the parent runs threads (progress relay), and forking them is unsafe.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["v2d_core.shard"])
    return context


def _relay(events: Queue[tuple[int, str] | None], progress: Progress) -> None:
    while (event := events.get()) is not None:
        progress.sample_done(*event)


_events: Queue[tuple[int, str] | None] | None = None


def _init_worker(events: Queue[tuple[int, str] | None]) -> None:
    global _events
    _events = events


def _run_shard(spec: ShardSpec, job: JobConfig) -> ShardResult:
    def report(sample: Sample) -> None:
        if _events is not None:
            _events.put((spec.shard_id, str(sample.status)))

    return process_shard(spec, job, on_sample=report)
