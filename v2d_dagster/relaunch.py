"""``{dataset}_{stage}_relaunch_failed``: one backfill of exactly the stage's failed shards.

At 10,000 shards nobody picks the failed ones by hand. Turn the sensor on (UI, Automation page):
on its next tick it reads every partition's status from the instance's status cache (one query,
not one per shard) and launches a single backfill of the failed ones, batched by the stage's
``shards_per_run`` like any backfill; the backfill is tagged ``v2d/relaunch``. While that
backfill runs, further ticks skip. Turn the sensor off again when the stage is clean (a shard
that keeps failing is relaunched on every tick after its backfill ends).
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution.backfill import (
    BULK_ACTION_TERMINAL_STATUSES,
    BulkActionsFilter,
    BulkActionStatus,
)

from v2d_dagster.assets.shard_stage import stage_key
from v2d_dagster.spec import DatasetSpec

RELAUNCH_TAG = "v2d/relaunch"
ACTIVE = [status for status in BulkActionStatus if status not in BULK_ACTION_TERMINAL_STATUSES]


def failed_partitions(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: dg.DynamicPartitionsDefinition
) -> list[str]:
    """The partitions of ``key`` whose latest materialization attempt failed, sorted."""
    assert partitions.name is not None
    keys = instance.get_dynamic_partitions(partitions.name)
    status = instance.get_status_by_partition(key, keys, partitions) or {}
    return sorted(k for k, value in status.items() if value == dg.AssetPartitionStatus.FAILED)


def build_relaunch_sensor(
    dataset: DatasetSpec, stage: str, partitions: dg.DynamicPartitionsDefinition
) -> dg.SensorDefinition:
    """The stopped-by-default sensor that relaunches ``stage``'s failed shards as one backfill."""
    key = stage_key(dataset, stage)
    name = f"{dataset.name}_{stage}_relaunch_failed"

    @dg.sensor(
        name=name,
        asset_selection=dg.AssetSelection.assets(key),
        minimum_interval_seconds=dataset.automation_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"One backfill of the failed shards of {dataset.name}/{stage}.",
    )
    def relaunch_failed(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        active = context.instance.get_backfills(
            filters=BulkActionsFilter(statuses=ACTIVE, tags={RELAUNCH_TAG: name}), limit=1
        )
        if active:
            return dg.SkipReason(f"backfill {active[0].backfill_id} of failed shards is still running")
        failed = failed_partitions(context.instance, key, partitions)
        if not failed:
            return dg.SkipReason(f"no failed shard in {key.to_user_string()}")
        assert context.repository_def is not None
        subset = AssetGraphSubset.from_asset_partition_set(
            {AssetKeyPartitionKey(key, partition) for partition in failed}, context.repository_def.asset_graph
        )
        context.log.info(f"relaunching {len(failed)} failed shard(s): {failed[:10]}...")
        return dg.RunRequest.for_asset_graph_subset(subset, tags={RELAUNCH_TAG: name})

    return relaunch_failed
