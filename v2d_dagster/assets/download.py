"""``{dataset}/download``: fetch every row of a shard and write the shard, one partition per shard."""

from __future__ import annotations

import dagster as dg

from v2d_dagster.assets.shard_plan import shard_inputs_key
from v2d_dagster.assets.shard_stage import build_shard_stage, plan_resolver
from v2d_dagster.spec import DatasetSpec


def build_download(dataset: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The download stage reads the shard plan's per-shard input files."""
    return build_shard_stage(
        dataset, "download", shard_inputs_key(dataset), partitions, plan_resolver(dataset)
    )
