"""Each shard's materialization with its own data version and its own input's, so staleness is true.

A batch run (a partition range) would give every partition the tags Dagster computes once for
the step: one data version, one upstream version and one upstream event pointer for all of
them. Instead a stage logs one :class:`dagster.AssetMaterialization` per shard with:

- ``dagster/data_version``: a digest of the shard's status parquet (its rows, as written);
- ``dagster/code_version``: the stage's code version;
- ``dagster/input_data_version/<upstream>`` and ``dagster/input_event_pointer/<upstream>``: the
  upstream partition's latest data version and the storage id of the event that carried it
  (for ``shard_inputs``, the latest observation of that shard: the plan's when it changed the
  shard's rows, else the one the first stage to read it made; for a stage, its materialization).

These are the tags Dagster's staleness resolver reads: after a clean backfill no shard is stale,
and a shard is stale when its own upstream shard changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
    DEFAULT_DATA_VERSION,
    NULL_EVENT_POINTER,
    extract_data_version_from_entry,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)

from v2d_core.storage import fresh_fs
from v2d_dagster.plan import PlannedShard, read_plan

BACKFILL_TAG = "dagster/backfill"
DIGEST_BLOCK = 1 << 20


def parquet_digest(path: str) -> str:
    """A short sha256 of a file's bytes, read through fsspec."""
    fs, fs_path = fresh_fs(path)
    digest = hashlib.sha256()
    with fs.open(fs_path, "rb") as handle:
        while block := handle.read(DIGEST_BLOCK):
            digest.update(block)
    return digest.hexdigest()[:16]


def upstream_tags(
    instance: dg.DagsterInstance, upstream: dg.AssetKey, external: bool, partition: str
) -> dict:
    """The provenance tags naming ``upstream``'s current version of ``partition``."""
    record = instance.get_latest_data_version_record(upstream, external, partition)
    version = extract_data_version_from_entry(record.event_log_entry) if record is not None else None
    return {
        get_input_data_version_tag(upstream): (version or DEFAULT_DATA_VERSION).value,
        get_input_event_pointer_tag(upstream): str(record.storage_id)
        if record is not None
        else NULL_EVENT_POINTER,
    }


def shard_materialization(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    upstream: dg.AssetKey,
    upstream_is_external: bool,
    partition: str,
    parquet_path: str,
    metadata: Mapping[str, Any],
) -> dg.AssetMaterialization:
    """One shard of ``key`` (read from ``upstream``) materialized, with its own lineage (module doc)."""
    tags = {
        DATA_VERSION_TAG: parquet_digest(parquet_path),
        DATA_VERSION_IS_USER_PROVIDED_TAG: "true",
        CODE_VERSION_TAG: context.assets_def.code_versions_by_key[key] or context.run.run_id,
        **upstream_tags(context.instance, upstream, upstream_is_external, partition),
    }
    if backfill := context.run.tags.get(BACKFILL_TAG):
        tags[BACKFILL_TAG] = backfill
    return dg.AssetMaterialization(asset_key=key, partition=partition, metadata=dict(metadata), tags=tags)


def shard_input_events(
    key: dg.AssetKey, partition: str, shard: PlannedShard
) -> tuple[dg.AssetMaterialization, dg.AssetObservation]:
    """A change of ``shard_inputs``' ``partition``: an update for automation (the materialization)
    and the new version for staleness (the observation)."""
    observation = shard_input_observation(key, partition, shard)
    materialization = dg.AssetMaterialization(
        asset_key=key, partition=partition, tags=observation.tags, metadata=observation.metadata
    )
    return materialization, observation


def shard_input_observation(key: dg.AssetKey, partition: str, shard: PlannedShard) -> dg.AssetObservation:
    """``shard_inputs``' ``partition`` at the plan's version of it."""
    return dg.AssetObservation(
        asset_key=key,
        partition=partition,
        tags={DATA_VERSION_TAG: shard.digest},
        metadata={"rows": shard.row_count},
    )


def observe_first_inputs(
    context: dg.AssetExecutionContext, key: dg.AssetKey, shard_dir: str, partitions: list[str]
) -> None:
    """Observe the plan's version of each of ``partitions`` that ``key`` has no version of yet.

    The plan reports only registered shards whose rows changed; a new shard's version is
    observed here, by the first stage that reads it, so that the stage's materialization points
    at it (module doc).
    """
    observed = context.instance.event_log_storage.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_OBSERVATION, set(partitions)
    )
    first = [partition for partition in partitions if partition not in observed]
    if not first:
        return
    plan = read_plan(shard_dir)
    for partition in first:
        context.log_event(shard_input_observation(key, partition, plan.shards[partition]))
