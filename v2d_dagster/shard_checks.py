"""The per-shard asset checks: the core's verification of a written shard as Dagster check evaluations."""

from __future__ import annotations

import dagster as dg

from v2d_core.job import JobConfig
from v2d_core.sharding import ShardSpec
from v2d_core.shards import ShardLayout
from v2d_core.shards.verify import CHECK_NAMES, WARN_ONLY, check_shard, input_keys
from v2d_core.subsamplers.chain import output_encode_formats

__all__ = ["CHECK_NAMES", "shard_check_evaluations"]


def shard_check_evaluations(
    key: dg.AssetKey, partition: str, spec: ShardSpec, job: JobConfig, min_success_rate: float
) -> list[dg.AssetCheckEvaluation]:
    """Every check of :data:`CHECK_NAMES` on the shard of ``partition``; ``success_rate`` only warns."""
    layout = ShardLayout(job.output_folder, partition, job.output_format)
    media = frozenset(output_encode_formats(job).values())
    return [
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=outcome.name,
            passed=outcome.passed,
            partition=partition,
            description=outcome.description,
            metadata=outcome.metadata,
            severity=dg.AssetCheckSeverity.WARN if outcome.name in WARN_ONLY else dg.AssetCheckSeverity.ERROR,
        )
        for outcome in check_shard(layout, input_keys(job, spec), min_success_rate, media)
    ]
