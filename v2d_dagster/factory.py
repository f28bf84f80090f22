"""Build each dataset's assets from its spec: ``shard_plan`` then one shard-partitioned asset per stage.

Adding a stage (downsample, optical_flow, subset) is one module under ``assets/`` with a
builder taking ``(dataset, partitions)`` and one entry in :data:`STAGE_BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg

from v2d_dagster.assets.download import build_download
from v2d_dagster.assets.shard_plan import build_shard_inputs, build_shard_plan
from v2d_dagster.spec import DatasetSpec, load_datasets

StageBuilder = Callable[[DatasetSpec, dg.PartitionsDefinition], dg.AssetsDefinition]

# Stage name -> builder, in graph order.
STAGE_BUILDERS: dict[str, StageBuilder] = {
    "download": build_download,
}


def shard_partitions(dataset: DatasetSpec) -> dg.DynamicPartitionsDefinition:
    """The dataset's shard ids (``00000``...), shared by all its stages."""
    return dg.DynamicPartitionsDefinition(name=f"{dataset.name}_shards")


def build_dataset_assets(dataset: DatasetSpec) -> list[dg.AssetsDefinition]:
    """``{name}/shard_plan``, ``{name}/shard_inputs``, and ``{name}/{stage}`` for each declared stage."""
    partitions = shard_partitions(dataset)
    assets = [build_shard_plan(dataset, partitions), build_shard_inputs(dataset, partitions)]
    for stage, builder in STAGE_BUILDERS.items():
        if stage in dataset.stages:
            assets.append(builder(dataset, partitions))
    return assets


def build_assets(datasets: Sequence[DatasetSpec]) -> list[dg.AssetsDefinition]:
    """Every dataset's assets."""
    return [asset for dataset in datasets for asset in build_dataset_assets(dataset)]


def build_definitions(datasets_dir: str | None = None) -> dg.Definitions:
    """Definitions for the datasets in ``datasets_dir`` (default: ``$V2D_DATASETS_DIR`` or ``./datasets``)."""
    return dg.Definitions(
        assets=build_assets(load_datasets(datasets_dir)),
        # A run is one step (a batch of shards): running it in the run's own process saves a
        # process start per run.
        executor=dg.in_process_executor,
    )
