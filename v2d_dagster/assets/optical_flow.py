"""``{dataset}/optical_flow``: optical flow of each video of a downloaded tar, written as
``{key}.npy`` with its mean magnitude in ``{key}.json`` (the ``optical_flow`` preset by default)."""

from __future__ import annotations

import dagster as dg

from v2d_dagster.assets.shard_stage import build_tar_stage
from v2d_dagster.spec import DatasetSpec


def build_optical_flow(dataset: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``optical_flow[shard]`` reads ``download[shard]``'s tar (or the input webdataset's)."""
    return build_tar_stage(dataset, "optical_flow", partitions)
