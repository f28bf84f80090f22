"""``{dataset}/downsample``: the core's subset stage, by default with the ``downsample_ml`` preset
(224x224, 5 fps, scene clips of 4-10 s), over each downloaded tar; shard ids stay the same."""

from __future__ import annotations

import dagster as dg

from v2d_dagster.assets.shard_stage import build_tar_stage
from v2d_dagster.spec import DatasetSpec


def build_downsample(dataset: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``downsample[shard]`` reads ``download[shard]``'s tar (or the input webdataset's)."""
    return build_tar_stage(dataset, "downsample", partitions)
