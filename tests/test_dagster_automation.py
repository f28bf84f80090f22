"""Automation, in-process: the stages' automation conditions, the url-list sensor and a stage schedule.

The same definitions run under the daemon in test_dagster_daemon.py; here each piece is
evaluated directly, in a second or so.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import pytest

from tests.test_dagster_stages import DOWNLOAD, DOWNSAMPLE, FLOW, PLAN, write_reels
from v2d_core.errors import ConfigError
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions


def append_rows(folder: Path, server: MediaServer, count: int) -> None:
    with (folder / "reels.txt").open("a") as handle:
        for index in range(count):
            handle.write(server.url("files", "video_0003.mp4") + f"?appended={index}\n")


def evaluate(
    defs: dg.Definitions, instance: dg.DagsterInstance, previous: dg.EvaluateAutomationConditionsResult | None
) -> dg.EvaluateAutomationConditionsResult:
    """One automation tick, as the daemon would run it (Dagster's helper warns of a beta parameter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        cursor = previous.cursor if previous is not None else None
        return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)


def requested(result: dg.EvaluateAutomationConditionsResult) -> dict[str, list[str]]:
    keys = (DOWNLOAD, DOWNSAMPLE, FLOW)
    found = {key.path[-1]: sorted(result.get_requested_partitions(key)) for key in keys}
    return {stage: partitions for stage, partitions in found.items() if partitions}


def test_new_and_changed_shards_flow_down_the_stages_by_themselves(
    tmp_path: Path, media_server: MediaServer
) -> None:
    folder = write_reels(tmp_path, media_server, automation=True)  # 3 rows: 00000 (2), 00001 (1)
    defs = build_definitions(str(folder))
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(list(defs.assets), selection=[PLAN], instance=instance).success
        tick = evaluate(defs, instance, None)
        assert requested(tick) == {}  # shards that exist when automation starts are left to a backfill

        append_rows(folder, media_server, 2)  # 00001 fills up (its rows change), 00002 is new
        assert dg.materialize(list(defs.assets), selection=[PLAN], instance=instance).success
        tick = evaluate(defs, instance, tick)
        both = ["00001", "00002"]
        assert requested(tick) == {"download": both}  # downstream waits for download's blocking checks
        for partition in both:
            assert dg.materialize(
                list(defs.assets), selection=[DOWNLOAD], partition_key=partition, instance=instance
            ).success
        tick = evaluate(defs, instance, tick)
        assert requested(tick) == {"downsample": both, "optical_flow": both}

        # a download launched by hand: its downstream shards follow on the next tick
        assert dg.materialize(
            list(defs.assets), selection=[DOWNLOAD], partition_key="00000", instance=instance
        ).success
        tick = evaluate(defs, instance, tick)
        assert requested(tick) == {"downsample": ["00000"], "optical_flow": ["00000"]}
        tick = evaluate(defs, instance, tick)
        assert requested(tick) == {}  # handled: nothing is requested twice


def test_url_list_sensor_requests_a_plan_when_the_list_changes(
    tmp_path: Path, media_server: MediaServer
) -> None:
    folder = write_reels(tmp_path, media_server, automation=True)
    sensor = build_definitions(str(folder)).resolve_sensor_def("reels_url_list")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_sensor_context(instance=instance)
        first = sensor(context)
        assert isinstance(first, dg.RunRequest) and first.asset_selection == [PLAN]
        assert isinstance(
            sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor)), dg.SkipReason
        )

        append_rows(folder, media_server, 1)
        grown = sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(grown, dg.RunRequest) and grown.run_key != first.run_key

        (folder / "reels.txt").unlink()
        gone = sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor))
        assert isinstance(gone, dg.SkipReason) and "reels.txt" in str(gone.skip_message)


def test_stage_schedule_reprocesses_every_shard_in_batches(tmp_path: Path, media_server: MediaServer) -> None:
    stages = {"download": {"output_format": "webdataset"}, "downsample": {"shards_per_run": 2}}
    defs = build_definitions(str(write_reels(tmp_path, media_server, stages=stages)))
    schedule = defs.resolve_schedule_def("reels_downsample_schedule")
    with dg.instance_for_test() as instance:  # schedules need an instance on disk
        empty = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert empty.run_requests == [] and "no shards" in str(empty.skip_message)

        instance.add_dynamic_partitions("reels_shards", ["00000", "00001", "00002", "00003", "00004"])
        ticked = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
    ranges = [
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in ticked.run_requests or []
    ]
    assert ranges == [("00000", "00001"), ("00002", "00003"), ("00004", "00004")]
    assert {tuple(r.asset_selection or []) for r in ticked.run_requests or []} == {(DOWNSAMPLE,)}


def test_a_bad_cron_string_is_an_error_naming_the_dataset_file(
    tmp_path: Path, media_server: MediaServer
) -> None:
    folder = write_reels(tmp_path, media_server, schedules={"downsample": "every sunday"})
    with pytest.raises(ConfigError, match=r"reels\.yaml") as error:
        build_definitions(str(folder))
    assert "every sunday" in str(error.value)
