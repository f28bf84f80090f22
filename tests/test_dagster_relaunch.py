"""The stage's relaunch sensor: one backfill of exactly the failed shards, among 10,000 partitions."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from tests.test_dagster import DOWNLOAD, materialize_downloads, materialize_plan, write_dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions
from v2d_dagster.relaunch import RELAUNCH_TAG


# Dagster's own sensor evaluation of an asset_selection calls its deprecated AssetSelection.keys.
@pytest.mark.filterwarnings("ignore:Function `AssetSelection.keys` is deprecated:DeprecationWarning")
def test_relaunch_sensor_requests_one_backfill_of_the_failed_shards(
    tmp_path: Path, media_server: MediaServer
) -> None:
    defs = build_definitions(str(write_dataset(tmp_path / "datasets", media_server)))
    (sensor,) = [s for s in defs.sensors or () if s.name == "clips_download_relaunch_failed"]
    assert isinstance(sensor, dg.SensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    with dg.instance_for_test() as instance:
        materialize_plan(defs, instance)  # 00000, 00001, 00002
        instance.add_dynamic_partitions("clips_shards", [f"{i:05d}" for i in range(3, 10_000)])
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        assert sensor.evaluate_tick(context).skip_message == "no failed shard in clips/download"

        assets = list(defs.assets)
        assert dg.materialize(assets, selection=[DOWNLOAD], partition_key="00000", instance=instance).success
        for broken in ("00001", "09999"):  # 00001's rows are gone, 09999 is in no plan: both runs fail
            if broken == "00001":
                (tmp_path / "datasets" / "out" / "_shard_inputs" / "00001.arrow").unlink()
            result = dg.materialize(
                assets, selection=[DOWNLOAD], partition_key=broken, instance=instance, raise_on_error=False
            )
            assert not result.success

        (request,) = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs)
        ).run_requests
    assert request.tags[RELAUNCH_TAG] == "clips_download_relaunch_failed"
    assert request.asset_graph_subset is not None
    requested = {
        (ap.asset_key, ap.partition_key) for ap in request.asset_graph_subset.iterate_asset_partitions()
    }
    assert requested == {(DOWNLOAD, "00001"), (DOWNLOAD, "09999")}


def stale_by_dagster(defs: dg.Definitions, instance: dg.DagsterInstance, partitions: list[str]) -> list[str]:
    """The partitions Dagster's own resolver (what the UI shows, one by one) calls stale."""
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, list(defs.assets))
    return [p for p in partitions if resolver.get_status(DOWNLOAD, p).value == "STALE"]


def relaunch_stale(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[str] | str:
    """One tick of the stale sensor: the partitions it requests, or why it skipped."""
    (sensor,) = [s for s in defs.sensors or () if s.name == "clips_download_relaunch_stale"]
    assert isinstance(sensor, dg.SensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    if not result.run_requests:
        return str(result.skip_message)
    (request,) = result.run_requests
    assert request.tags[RELAUNCH_TAG] == "clips_download_relaunch_stale"
    assert request.asset_graph_subset is not None
    return sorted(ap.partition_key or "" for ap in request.asset_graph_subset.iterate_asset_partitions())


@pytest.mark.filterwarnings("ignore:Function `AssetSelection.keys` is deprecated:DeprecationWarning")
def test_relaunch_stale_sensor_requests_the_shards_whose_rows_or_settings_changed(
    tmp_path: Path, media_server: MediaServer
) -> None:
    folder = write_dataset(tmp_path / "datasets", media_server)
    defs = build_definitions(str(folder))
    shards = ["00000", "00001", "00002"]
    with dg.instance_for_test() as instance:
        materialize_plan(defs, instance)
        instance.add_dynamic_partitions("clips_shards", [f"{i:05d}" for i in range(3, 10_000)])
        # 00002 (a 404) fails its success_rate check, but is written
        materialize_downloads(defs, instance, shards)
        assert relaunch_stale(defs, instance) == "no stale shard in clips/download"
        assert stale_by_dagster(defs, instance, shards) == []

        with (folder / "clips.csv").open("a") as handle:  # 00002 fills up (its rows change), 00003 starts
            handle.write(f"{media_server.url('files', 'video_0000.mp4')}?again,again\n")
            handle.write(f"{media_server.url('files', 'video_0001.mp4')}?again,again\n")
        materialize_plan(defs, instance)
        assert relaunch_stale(defs, instance) == ["00002"] == stale_by_dagster(defs, instance, shards)

        changed = build_definitions(str(write_dataset(folder, media_server, output_format="webdataset")))
        assert relaunch_stale(changed, instance) == shards == stale_by_dagster(changed, instance, shards)
