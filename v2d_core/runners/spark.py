"""The pyspark distributor: a job's shards as Spark tasks, ``subjob_size`` shards per Spark job.

Shards run on the active SparkSession (a cluster you operate) or, when there is none, on
a local session of ``processes_count`` cores that v2d starts and stops; ``distributor_args``
are Spark settings for that session (e.g. ``spark.master``, ``spark.executor.memory``).
Every task calls the local runner's shard function (``run_shard``), so executors must
reach ``output_folder`` (a shared filesystem or object storage): the shards' inputs are
written under it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import Any

from v2d_core.errors import ConfigError
from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.runners.progress import FiguresObserver, Progress
from v2d_core.runners.run import RunSummary, portable_job, retry_rounds
from v2d_core.shards.entry import run_shard
from v2d_core.shards.result import ShardResult

try:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession
except ImportError as missing:
    raise ConfigError(
        f'distributor "pyspark" needs the spark extra: pip install "v2d[spark]" ({missing})'
    ) from missing

TaskOutcome = tuple[int, ShardResult | str]


def run_shards_on_spark(
    specs: list[ShardSpec],
    job: JobConfig,
    show_progress: bool = False,
    observer: FiguresObserver | None = None,
) -> RunSummary:
    """Run ``specs`` as Spark tasks, ``subjob_size`` per Spark job; retry failing shards as ``run_shards``."""
    job = portable_job(job)
    distribution = job.config.distribution
    summary = RunSummary()
    with (
        spark_session(distribution.processes_count, distribution.distributor_args or {}) as spark,
        Progress(
            total=sum(spec.row_count for spec in specs), enabled=show_progress, observer=observer
        ) as progress,
    ):
        attempt = partial(_run_round, spark, job, summary, progress)
        summary.failed_shards = retry_rounds(specs, job.max_shard_retry, attempt)
    return summary


def _run_round(
    spark: SparkSession, job: JobConfig, summary: RunSummary, progress: Progress, specs: list[ShardSpec]
) -> dict[int, str]:
    """One round over ``specs``, ``subjob_size`` shards per Spark job; shard id -> error of the failed."""
    size = job.config.distribution.subjob_size
    failures: dict[int, str] = {}
    for start in range(0, len(specs), size):
        for shard_id, outcome in _run_subjob(spark, specs[start : start + size], job):
            if isinstance(outcome, str):
                failures[shard_id] = outcome
                continue
            summary.results.append(outcome)
            progress.shard_counted(shard_id, outcome.stats())
    return failures


@contextmanager
def spark_session(cores: int, settings: Mapping[str, Any]) -> Iterator[SparkSession]:
    """The active SparkSession; else a new one (``local[cores]`` unless ``settings`` say), stopped on exit."""
    active = _active_session()
    if active is not None:
        yield active
        return
    conf = {"spark.master": f"local[{cores}]", "spark.app.name": "v2d", **settings}
    if str(conf["spark.master"]).startswith("local"):
        # Nothing outside this machine talks to a local driver, and its executors must run
        # this interpreter, the one v2d is installed in.
        conf = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", **conf}
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    try:
        yield session
    finally:
        session.stop()


def _active_session() -> SparkSession | None:
    try:
        return SparkSession.active()
    except PySparkRuntimeError:  # neither an active nor a default session
        return None


def _run_subjob(spark: SparkSession, batch: list[ShardSpec], job: JobConfig) -> list[TaskOutcome]:
    """One Spark job, one task per shard; a job Spark aborts (an executor lost) fails all its shards."""
    context = spark.sparkContext
    context.setJobDescription(
        f"v2d shards {job.shard_name(batch[0].shard_id)}..{job.shard_name(batch[-1].shard_id)}"
    )
    try:
        return context.parallelize(batch, len(batch)).map(partial(_run_task, job=job)).collect()
    except Py4JJavaError as error:
        reason = str(error.java_exception.getMessage()).splitlines()[0]
        return [(spec.shard_id, f"Spark job failed: {reason}") for spec in batch]


def _run_task(spec: ShardSpec, job: JobConfig) -> TaskOutcome:
    """One shard on an executor; an exception is returned, so the job's other tasks still count."""
    try:
        return spec.shard_id, run_shard(spec, job)
    except Exception as error:
        return spec.shard_id, f"{type(error).__name__}: {error}"
