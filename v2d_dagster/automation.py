"""Runs without a click: per dataset, an automation sensor, a url-list sensor and stage schedules.

- ``{dataset}_automation`` evaluates the stages' ``AutomationCondition.eager()``: a shard of a
  stage materializes when its upstream shard lands (a new shard in the plan, a new download).
  Several shards at once become one backfill, batched by the stage's ``shards_per_run``.
- ``{dataset}_url_list`` watches the url list (or the input tars): when a file's size or
  modification time changes, it requests a ``shard_plan`` run, which registers the new
  shards (appended rows get new ids; existing ids never change).
- ``{dataset}_{stage}_schedule`` (from ``schedules:`` in the dataset file) re-processes every
  shard of a stage on a cron, ``shards_per_run`` shards per run.

They start running when the dataset says ``automation: true``; otherwise they are defined but
stopped, and the UI's Automation page turns them on. All their runs go through the instance's
run queue, like a click in the UI.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dagster as dg

from v2d_core.errors import V2DError
from v2d_dagster.assets.shard_plan import shard_plan_key
from v2d_dagster.assets.shard_stage import stage_key
from v2d_dagster.plan import input_stamp
from v2d_dagster.spec import DatasetSpec

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def _sensor_status(dataset: DatasetSpec) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if dataset.automation else dg.DefaultSensorStatus.STOPPED


def build_automation_sensor(dataset: DatasetSpec) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the automation conditions of ``dataset``'s stages."""
    return dg.AutomationConditionSensorDefinition(
        f"{dataset.name}_automation",
        target=dg.AssetSelection.assets(*(stage_key(dataset, stage) for stage in dataset.stages)),
        default_status=_sensor_status(dataset),
        minimum_interval_seconds=dataset.automation_interval_seconds,
        description=f"Materializes a shard of each {dataset.name} stage when its upstream shard lands.",
    )


def build_url_list_sensor(dataset: DatasetSpec) -> dg.SensorDefinition:
    """Requests a ``shard_plan`` run whenever ``dataset``'s input files change."""
    job = dataset.plan_job()
    plan_key = shard_plan_key(dataset)

    @dg.sensor(
        name=f"{dataset.name}_url_list",
        asset_selection=[plan_key],
        minimum_interval_seconds=dataset.automation_interval_seconds,
        default_status=_sensor_status(dataset),
        description=f"Re-plans {dataset.name}'s shards when its url list (or input tars) change.",
    )
    def url_list_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        try:
            stamp = input_stamp(job)
        except (V2DError, OSError) as error:
            return dg.SkipReason(f"cannot read {dataset.url_list}: {error}")
        if stamp == context.cursor:
            return dg.SkipReason("input unchanged since the last plan")
        context.update_cursor(stamp)
        return dg.RunRequest(run_key=stamp, asset_selection=[plan_key])

    return url_list_sensor


def build_stage_schedule(dataset: DatasetSpec, stage: str, cron: str) -> dg.ScheduleDefinition:
    """Re-processes every registered shard of ``stage`` on ``cron``, a batch of shards per run."""
    key = stage_key(dataset, stage)
    per_run = dataset.stages[stage].shards_per_run
    partitions_name = f"{dataset.name}_shards"

    @dg.schedule(
        name=f"{dataset.name}_{stage}_schedule",
        cron_schedule=cron,
        target=[key],
        default_status=dg.DefaultScheduleStatus.RUNNING
        if dataset.automation
        else dg.DefaultScheduleStatus.STOPPED,
        description=f"Re-processes every shard of {dataset.name}/{stage}, {per_run} per run.",
    )
    def stage_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest | dg.SkipReason]:
        keys = sorted(context.instance.get_dynamic_partitions(partitions_name))
        if not keys:
            yield dg.SkipReason(f"{dataset.name} has no shards yet; materialize its shard_plan")
            return
        yield from stage_run_requests(key, keys, per_run)

    return stage_schedule


def stage_run_requests(key: dg.AssetKey, partitions: Sequence[str], per_run: int) -> Iterator[dg.RunRequest]:
    """One run per ``per_run`` consecutive partitions (a partition range, as a backfill makes)."""
    for start in range(0, len(partitions), per_run):
        batch = partitions[start : start + per_run]
        yield dg.RunRequest(
            run_key=f"{batch[0]}-{batch[-1]}",
            asset_selection=[key],
            tags={RANGE_START: batch[0], RANGE_END: batch[-1]},
        )


def build_automation(dataset: DatasetSpec) -> tuple[list[dg.SensorDefinition], list[dg.ScheduleDefinition]]:
    """``dataset``'s sensors and schedules."""
    sensors = [build_automation_sensor(dataset), build_url_list_sensor(dataset)]
    schedules = [build_stage_schedule(dataset, stage, cron) for stage, cron in dataset.schedules.items()]
    return sensors, schedules
