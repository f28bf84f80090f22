"""``{dataset}_{stage}_relaunch_failed`` and ``..._relaunch_stale``: one backfill of exactly those shards.

At 10,000 shards nobody picks them by hand. Turn a sensor on (UI, Automation page): on its next
tick it finds the stage's shards in one pass over the instance (failed: every partition's
status from the status cache, one query, not one per shard; stale: :mod:`v2d_dagster.staleness`)
and launches a single backfill of them, batched by the stage's ``shards_per_run`` like any
backfill; the backfill is tagged ``v2d/relaunch`` with the sensor's name. While that backfill
runs, further ticks skip. Turn the sensor off again when the stage is clean (a shard that keeps
failing is relaunched on every tick after its backfill ends).
"""

from __future__ import annotations

from collections.abc import Callable

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
from v2d_dagster.staleness import stale_partitions

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


def build_relaunch_sensors(
    dataset: DatasetSpec, stage: str, partitions: dg.DynamicPartitionsDefinition
) -> list[dg.SensorDefinition]:
    """The stopped-by-default sensors that relaunch ``stage``'s failed shards, and its stale ones."""
    key = stage_key(dataset, stage)

    def failed(context: dg.SensorEvaluationContext) -> list[str]:
        return failed_partitions(context.instance, key, partitions)

    def stale(context: dg.SensorEvaluationContext) -> list[str]:
        assert context.repository_def is not None
        return stale_partitions(context.instance, context.repository_def.asset_graph, key)

    return [_relaunch_sensor(dataset, key, "failed", failed), _relaunch_sensor(dataset, key, "stale", stale)]


def _relaunch_sensor(
    dataset: DatasetSpec, key: dg.AssetKey, kind: str, find: Callable[[dg.SensorEvaluationContext], list[str]]
) -> dg.SensorDefinition:
    name = f"{dataset.name}_{key.path[-1]}_relaunch_{kind}"

    @dg.sensor(
        name=name,
        asset_selection=dg.AssetSelection.assets(key),
        minimum_interval_seconds=dataset.automation_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"One backfill of the {kind} shards of {key.to_user_string()}.",
    )
    def relaunch(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        active = context.instance.get_backfills(
            filters=BulkActionsFilter(statuses=ACTIVE, tags={RELAUNCH_TAG: name}), limit=1
        )
        if active:
            return dg.SkipReason(f"backfill {active[0].backfill_id} of {kind} shards is still running")
        found = find(context)
        if not found:
            return dg.SkipReason(f"no {kind} shard in {key.to_user_string()}")
        assert context.repository_def is not None
        subset = AssetGraphSubset.from_asset_partition_set(
            {AssetKeyPartitionKey(key, partition) for partition in found}, context.repository_def.asset_graph
        )
        context.log.info(f"relaunching {len(found)} {kind} shard(s): {found[:10]}...")
        return dg.RunRequest.for_asset_graph_subset(subset, tags={RELAUNCH_TAG: name})

    return relaunch
