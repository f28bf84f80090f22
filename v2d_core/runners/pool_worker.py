"""The pool worker's side of a local run: its start-up, one shard, and its progress reports.

Workers unpickle these functions by reference, so this module's imports are what every worker
loads beyond the forkserver's preload: nothing of the planning process (its yt-dlp facts, the
progress bar) belongs here.
"""

from __future__ import annotations

import os
import time
from multiprocessing.queues import Queue
from typing import TYPE_CHECKING

import fsspec.config

from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.runners.events import SampleBatch, SampleEvent, ShardEvent, WorkerEvent
from v2d_core.runners.lifetime import watch_main_process
from v2d_core.sample import Sample

if TYPE_CHECKING:
    from v2d_core.shards.result import ShardResult

_events: Queue[WorkerEvent | None] | None = None
REPORT_EVERY = 0.25


def init_worker(
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


def run_shard_in_worker(spec: ShardSpec, job: JobConfig) -> ShardResult:
    """Run one shard in this worker, reporting its rows and its commit to the planning process."""
    from v2d_core.shards.entry import run_shard  # preloaded by the forkserver

    if _events is None:
        return run_shard(spec, job)
    reporter = Reporter(_events, spec.shard_id)
    result = run_shard(spec, job, on_sample=reporter.report)
    reporter.flush()
    _events.put(ShardEvent(spec.shard_id))
    return result


class Reporter:
    """A shard's finished rows, sent to the progress relay in batches at most every
    ``REPORT_EVERY`` seconds: one queue message (a pickle, a pipe write and a wake-up of the
    queue's feeder thread and of the relay) for many rows, instead of one per row."""

    def __init__(self, events: Queue[WorkerEvent | None], shard_id: int) -> None:
        self._events = events
        self._shard_id = shard_id
        self._pending: list[SampleEvent] = []
        self._sent = time.monotonic()

    def report(self, sample: Sample, downloaded: int) -> None:
        self._pending.append(SampleEvent.of(self._shard_id, sample, downloaded))
        if time.monotonic() - self._sent >= REPORT_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._events.put(SampleBatch(tuple(self._pending)))
            self._pending = []
        self._sent = time.monotonic()
