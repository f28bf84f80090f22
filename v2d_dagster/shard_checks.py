"""Per-shard asset checks: the core's verification (:mod:`v2d_core.shards.verify`) as Dagster
check evaluations; ``readable`` and ``success_rate`` are blocking (a failure holds back the
stages downstream)."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.shards import ShardLayout
from v2d_core.shards.verify import CHECK_NAMES, check_shard, input_keys
from v2d_core.subsamplers.chain import output_encode_formats

__all__ = ["BLOCKING", "CHECK_NAMES", "shard_check_evaluations"]

BLOCKING = frozenset({"readable", "success_rate"})


def shard_check_evaluations(
    key: dg.AssetKey,
    partition: str,
    spec: ShardSpec,
    job: JobConfig,
    min_success_rate: float,
    target: AssetCheckEvaluationTargetMaterializationData | None,
) -> list[dg.AssetCheckEvaluation]:
    """Every check of :data:`CHECK_NAMES` on the shard of ``partition``, naming the materialization
    it verified (``target``), so downstream stages wait for the blocking ones."""
    layout = ShardLayout(job.output_folder, partition, job.output_format)
    media = frozenset(output_encode_formats(job).values())
    return [
        dg.AssetCheckEvaluation(
            target_materialization_data=target,
            asset_key=key,
            check_name=outcome.name,
            passed=outcome.passed,
            partition=partition,
            description=outcome.description,
            metadata=outcome.metadata,
            severity=dg.AssetCheckSeverity.ERROR,
            blocking=outcome.name in BLOCKING,
        )
        for outcome in check_shard(layout, input_keys(job, spec), min_success_rate, media)
    ]
