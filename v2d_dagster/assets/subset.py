"""``{dataset}/subset``: re-process an existing webdataset, one partition per input tar.

The dataset names the tars as its ``url_list`` with ``input_format: webdataset``; its
``shard_plan`` registers one partition per tar name (``00042.tar`` is ``00042``) and
``shard_inputs`` stands for the tars themselves (a source asset: nothing here writes them).
"""

from __future__ import annotations

import dagster as dg

from v2d_dagster.assets.shard_stage import build_tar_stage
from v2d_dagster.spec import DatasetSpec


def build_subset(dataset: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``subset[shard]`` reads the input tar of the same shard id."""
    return build_tar_stage(dataset, "subset", partitions)
