"""Runs tagged ``v2d/dataset`` and ``v2d/stage``, so the Runs page filters by dataset and stage.

Asset keys are ``[dataset, stage]``; a run's tags follow from the assets it targets. The
instance's run coordinator (``dagster.yaml``) tags every queued run when it is submitted
(backfills, sensors, schedules, the UI); :func:`tag_run` tags runs that bypass the queue
(``dagster asset materialize``, in-process runs) when their step starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

DATASET_TAG, STAGE_TAG = "v2d/dataset", "v2d/stage"


def stage_run_tags(asset_keys: Iterable[dg.AssetKey]) -> dict[str, str]:
    """``v2d/dataset`` and ``v2d/stage`` for a run of ``asset_keys`` (several values comma-joined)."""
    keys = [key for key in asset_keys if len(key.path) == 2]
    if not keys:
        return {}
    return {
        DATASET_TAG: ",".join(sorted({key.path[0] for key in keys})),
        STAGE_TAG: ",".join(sorted({key.path[1] for key in keys})),
    }


def missing_tags(run: dg.DagsterRun, tags: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in tags.items() if name not in run.tags}


def tag_run(context: dg.AssetExecutionContext) -> None:
    """Tag the running run by the assets it targets, if nothing tagged it at submission."""
    tags = missing_tags(context.run, stage_run_tags(context.selected_asset_keys))
    if tags:
        context.instance.add_run_tags(context.run.run_id, tags)


class StageTaggingRunCoordinator(QueuedRunCoordinator):
    """Dagster's run queue, tagging each run by its dataset and stage as it is submitted."""

    def submit_run(self, context: SubmitRunContext) -> dg.DagsterRun:
        run = context.dagster_run
        tags = missing_tags(run, stage_run_tags(run.asset_selection or ()))
        if tags:
            self._instance.add_run_tags(run.run_id, tags)
            tagged = self._instance.get_run_by_id(run.run_id) or run
            context = SubmitRunContext(tagged, context.workspace)
        return super().submit_run(context)
