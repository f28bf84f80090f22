"""``run_shard``: the one call every runner (local pool, Spark, Slurm, Dagster) makes for a shard."""

from __future__ import annotations

from v2d_core.inputs.sharding import ShardSpec, discard_temporary_input
from v2d_core.job import JobConfig
from v2d_core.shards.commit import recover
from v2d_core.shards.process import SampleCallback, process_shard
from v2d_core.shards.result import ShardResult
from v2d_core.shards.retry import retry_shard


def run_shard(spec: ShardSpec, job: JobConfig, on_sample: SampleCallback | None = None) -> ShardResult:
    """``process_shard``; with ``incremental_mode="retry_failed"``, a finished shard is only retried.

    ``process_shard`` finishes what a killed commit left itself; a retry must do it before it
    asks whether the shard is finished.
    """
    retrying = False
    if job.incremental_mode == "retry_failed":
        recover(job.output_folder, [job.shard_name(spec.shard_id)])
        retrying = job.shard_layout(spec.shard_id).is_done()
    result = retry_shard(spec, job, on_sample) if retrying else process_shard(spec, job, on_sample)
    discard_temporary_input(spec)
    return result
