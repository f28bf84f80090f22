"""Build each dataset's assets from its spec: ``shard_plan`` then one shard-partitioned asset per stage,
the dataset's sensors and schedules (:mod:`v2d_dagster.automation`), a sensor per stage that
relaunches its failed shards and one its stale shards (:mod:`v2d_dagster.relaunch`), and one job per stage
(``{dataset}_{stage}``) that runs a range of shards in one run from the command line (Slurm).

Adding a stage is one module under ``assets/`` with a builder taking ``(dataset, partitions)``
and one entry in :data:`STAGE_BUILDERS` (and its kind in :data:`v2d_dagster.spec.STAGE_KINDS`).
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from v2d_core.errors import ConfigError
from v2d_dagster.assets.download import build_download
from v2d_dagster.assets.downsample import build_downsample
from v2d_dagster.assets.optical_flow import build_optical_flow
from v2d_dagster.assets.shard_plan import build_shard_inputs, build_shard_plan
from v2d_dagster.assets.shard_stage import stage_key
from v2d_dagster.assets.subset import build_subset
from v2d_dagster.automation import build_automation
from v2d_dagster.executor import select_executor
from v2d_dagster.relaunch import build_relaunch_sensors
from v2d_dagster.spec import DatasetSpec, load_datasets

StageBuilder = Callable[[DatasetSpec, dg.PartitionsDefinition], dg.AssetsDefinition]

# Stage name -> builder, in graph order.
STAGE_BUILDERS: dict[str, StageBuilder] = {
    "download": build_download,
    "subset": build_subset,
    "downsample": build_downsample,
    "optical_flow": build_optical_flow,
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


def build_stage_jobs(dataset: DatasetSpec) -> list[dg.UnresolvedAssetJobDefinition]:
    """``{dataset}_{stage}`` for every stage: with the partition range tags, one run over a range of
    shards, as a backfill run does (``dagster job execute -j clips_download --tags ...``)."""
    return [
        dg.define_asset_job(
            f"{dataset.name}_{stage}",
            selection=dg.AssetSelection.assets(stage_key(dataset, stage)),
            description=f"{dataset.name}/{stage} over the shards its run's partition (range) tags name.",
        )
        for stage in dataset.stages
    ]


def build_dataset_definitions(dataset: DatasetSpec) -> dg.Definitions:
    """One dataset's assets, sensors, schedules and stage jobs (what its component builds)."""
    try:
        sensors, schedules = build_automation(dataset)
    except dg.DagsterInvalidDefinitionError as error:  # a bad cron string, say
        raise ConfigError(f"{dataset.source_file}: {error}") from None
    relaunch = [
        sensor
        for stage in dataset.stages
        for sensor in build_relaunch_sensors(dataset, stage, shard_partitions(dataset))
    ]
    return dg.Definitions(
        assets=build_dataset_assets(dataset),
        sensors=[*sensors, *relaunch],
        schedules=schedules,
        jobs=build_stage_jobs(dataset),
    )


def with_executor(*parts: dg.Definitions) -> dg.Definitions:
    """``parts`` merged, with v2d's executor: a run is one step (a batch of shards), by default run in
    the run's own process, which saves a process start per run; V2D_EXECUTOR=k8s gives each step a pod."""
    return dg.Definitions.merge(dg.Definitions(executor=select_executor()), *parts)


def build_definitions(datasets_dir: str | None = None) -> dg.Definitions:
    """Definitions for the datasets in ``datasets_dir`` (default: ``$V2D_DATASETS_DIR`` or ``./datasets``)."""
    datasets = load_datasets(datasets_dir)
    return with_executor(*(build_dataset_definitions(dataset) for dataset in datasets))
