"""The local pool's process start: a forkserver that imports the engine once per run.

The process that plans a run never imports the engine; the forkserver does, while the
planner reads its inputs, and every worker forks from it ready to work.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import BaseContext

# The shard loop, the direct-file fetchers and the usual writers (their parquet rows never make
# pyarrow import pandas: v2d_core.arrow_arrays). yt-dlp, scenedetect, OpenCV and tfrecord load in
# the worker that uses them.
WORKER_PRELOAD = [
    "v2d_core.runners.pool_worker",
    "v2d_core.shards.entry",
    "v2d_core.fetch.http",
    "v2d_core.fetch.ytdlp",
    "v2d_core.writers.files",
    "v2d_core.writers.webdataset",
]


def process_context() -> BaseContext:
    """forkserver with the engine preloaded (workers start without re-importing it), else spawn.

    Never plain fork: the parent runs threads (progress relay), and forking them is unsafe.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_PRELOAD)
    return context


def start_workers_early() -> None:
    """Start the forkserver now (it returns at once), so it imports the engine in parallel."""
    if process_context().get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()
