"""The stale shards of a stage, all partitions at once: what the UI shows one partition at a time.

A shard is stale when its latest materialization was made by other code (its
``dagster/code_version`` tag is not the stage's code version) or from another version of its
upstream shard (its ``dagster/input_data_version/<upstream>`` tag, written by
:mod:`v2d_dagster.lineage`, is not the upstream partition's current data version). These are
the stale causes Dagster reports for a shard itself; a shard whose upstream is stale but
unchanged is left to the upstream stage.

Dagster's resolver reads a few records per partition; here it is a constant number of queries
per stage and one read per 500 materializations, so 10,000 shards take seconds.
"""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    get_input_data_version_tag,
)

READ_BATCH = 500


def stale_partitions(instance: dg.DagsterInstance, graph: BaseAssetGraph, key: dg.AssetKey) -> list[str]:
    """The materialized partitions of the stage ``key`` whose code or upstream shard changed, sorted."""
    node = graph.get(key)
    (upstream,) = node.parent_keys
    storage = instance.event_log_storage
    upstream_event = (
        dg.DagsterEventType.ASSET_OBSERVATION
        if graph.get(upstream).is_external
        else dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    current = storage.get_latest_tags_by_partition(upstream, upstream_event, [DATA_VERSION_TAG])
    latest = sorted(
        storage.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION).values()
    )
    input_tag = get_input_data_version_tag(upstream)
    stale = []
    for start in range(0, len(latest), READ_BATCH):
        batch = dg.AssetRecordsFilter(asset_key=key, storage_ids=latest[start : start + READ_BATCH])
        for record in instance.fetch_materializations(batch, limit=READ_BATCH).records:
            materialization = record.asset_materialization
            if materialization is None or materialization.partition is None:
                continue
            tags = materialization.tags or {}
            upstream_now = current.get(materialization.partition, {}).get(
                DATA_VERSION_TAG, DEFAULT_DATA_VERSION.value
            )
            if tags.get(CODE_VERSION_TAG) != node.code_version or tags.get(input_tag) != upstream_now:
                stale.append(materialization.partition)
    return sorted(stale)
