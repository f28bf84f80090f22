"""``dagster dev`` (webserver + daemon) on 127.0.0.1: a backfill launched through GraphQL, and
automation (sensors, automation conditions) running shards nobody launched.

Slow by nature: the backfill daemon looks for new backfills every 30 s, and each run starts a
process that loads the code. About a minute each.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, REPO, write_dataset
from tests.test_dagster_stages import write_reels
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions
from v2d_dagster.lineage import parquet_digest
from v2d_dagster.testing import LocalDagster, plan_dataset


@pytest.mark.timeout(420)
def test_daemon_backfill_through_graphql_materializes_every_shard_in_batches(
    tmp_path: Path, media_server: MediaServer
) -> None:
    datasets = write_dataset(tmp_path / "datasets", media_server, shards_per_run=2, processes_count=2)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    partitions = plan_dataset(home, datasets, "clips")
    assert partitions == ["00000", "00001", "00002"]

    with LocalDagster(home, datasets) as dagster:
        backfill = dagster.launch_backfill(DOWNLOAD.path, partitions)
        status = dagster.wait_for_backfill(backfill, timeout=300)
        assert status == "COMPLETED_SUCCESS", dagster.log_path.read_text()[-3000:]
        assert dagster.materialized_partitions(DOWNLOAD.path) == set(partitions)
        runs = dagster.backfill_runs(backfill)
    assert len(runs) == 2  # shards_per_run=2: 00000-00001 in one run, 00002 in another
    assert sorted(stats(datasets / "out" / "download")) == partitions


@pytest.mark.timeout(240)
def test_appended_rows_become_a_shard_that_flows_down_the_stages_without_a_click(
    tmp_path: Path, media_server: MediaServer
) -> None:
    datasets = write_reels(tmp_path / "datasets", media_server, rows=4, automation=True)
    spec = yaml.safe_load((datasets / "reels.yaml").read_text())
    (datasets / "reels.yaml").write_text(yaml.safe_dump(spec | {"automation_interval_seconds": 1}))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    assert plan_dataset(home, datasets, "reels") == ["00000", "00001"]

    with LocalDagster(home, datasets) as dagster:
        # automation starts with the shards that exist: they are left alone (a backfill's job)
        dagster.wait_until(
            "a first automation tick", lambda: bool(dagster.sensor_ticks("reels_automation")), 90
        )
        with (datasets / "reels.txt").open("a") as handle:
            handle.write(media_server.url("files", "video_0002.mp4") + "?appended\n")
        stages = [["reels", stage] for stage in ("download", "downsample", "optical_flow")]
        dagster.wait_until(
            "shard 00002 through every stage",
            lambda: all(dagster.materialized_partitions(stage) == {"00002"} for stage in stages),
            timeout=120,
        )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("reels_shards") == ["00000", "00001", "00002"]
        # download, then (once its blocking checks pass) downsample and optical_flow together
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "00002"}))
        plans = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "reels_url_list"}))
    assert sorted(run.tags["v2d/stage"] for run in runs) == ["download", "downsample,optical_flow"]
    assert all(run.tags.get("dagster/from_automation_condition") == "true" for run in runs)
    assert 1 <= len(plans) <= 2  # on the sensor's first tick and when the list grew (or both at once)
    assert sorted(stats(datasets / "out" / "download")) == ["00002"]


def stale_statuses(home: Path, datasets: Path, keys: list[dg.AssetKey], partitions: list[str]) -> dict:
    """(stage, partition) -> (status, causes) as the UI resolves them (Dagster's test helper)."""
    from dagster._utils.test.data_versions import get_stale_status_resolver

    defs = build_definitions(str(datasets))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        resolver = get_stale_status_resolver(instance, list(defs.assets))
        return {
            (key.path[-1], partition): (
                resolver.get_status(key, partition).value,
                [cause.reason for cause in resolver.get_stale_causes(key, partition)],
            )
            for key in keys
            for partition in partitions
        }


def latest_materializations(home: Path, key: dg.AssetKey, partitions: list[str]) -> dict[str, Any]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return {
            partition: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
            ).records[0]
            for partition in partitions
        }


@pytest.mark.timeout(480)
def test_a_clean_backfill_of_every_stage_leaves_no_shard_stale(
    tmp_path: Path, long_media: MediaServer
) -> None:
    datasets = write_reels(tmp_path / "datasets", long_media, rows=5)  # 00000, 00001, 00002
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    partitions = plan_dataset(home, datasets, "reels")
    keys = [dg.AssetKey(["reels", stage]) for stage in ("download", "downsample", "optical_flow")]

    with LocalDagster(home, datasets) as dagster:
        backfill = dagster.launch_backfill(keys[0].path, partitions, also=[key.path for key in keys[1:]])
        status = dagster.wait_for_backfill(backfill, timeout=420)
        assert status == "COMPLETED_SUCCESS", dagster.log_path.read_text()[-3000:]

    statuses = stale_statuses(home, datasets, keys, partitions)
    assert statuses == {(key.path[-1], p): ("FRESH", []) for key in keys for p in partitions}
    # each shard its own data version (its parquet's digest), and its own upstream shard's version
    downloads = latest_materializations(home, keys[0], partitions)
    for partition, record in downloads.items():
        parquet = datasets / "out" / "download" / f"{partition}.parquet"
        assert record.asset_materialization.tags["dagster/data_version"] == parquet_digest(str(parquet))
    for key in keys[1:]:
        for partition, record in latest_materializations(home, key, partitions).items():
            tags = record.asset_materialization.tags
            assert (
                tags["dagster/input_data_version/reels/download"]
                == (downloads[partition].asset_materialization.tags["dagster/data_version"])
            )
    assert len({r.asset_materialization.tags["dagster/data_version"] for r in downloads.values()}) == 3


@pytest.mark.timeout(480)
def test_backfills_of_two_stages_run_in_their_pools(tmp_path: Path, long_media: MediaServer) -> None:
    datasets = write_reels(tmp_path / "datasets", long_media, rows=5)
    spec = yaml.safe_load((datasets / "reels.yaml").read_text())
    for stage in ("downsample", "optical_flow"):
        spec["stages"][stage] = {"shards_per_run": 1, "processes_count": 1}
    (datasets / "reels.yaml").write_text(yaml.safe_dump(spec))
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")  # pools: one run of each at a time
    partitions = plan_dataset(home, datasets, "reels")
    defs = build_definitions(str(datasets))
    batch = {"dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00002"}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        download = dg.AssetKey(["reels", "download"])
        assert dg.materialize(list(defs.assets), selection=[download], tags=batch, instance=instance).success

    with LocalDagster(home, datasets) as dagster:
        backfills = {
            stage: dagster.launch_backfill(["reels", stage], partitions)
            for stage in ("downsample", "optical_flow")
        }
        for backfill in backfills.values():
            assert dagster.wait_for_backfill(backfill, timeout=420) == "COMPLETED_SUCCESS"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for stage, backfill in backfills.items():
            records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill}))
            assert len(records) == 3  # shards_per_run=1
            assert {
                (r.dagster_run.tags["v2d/dataset"], r.dagster_run.tags["v2d/stage"]) for r in records
            } == {("reels", stage)}
            spans = sorted((r.start_time, r.end_time) for r in records)
            # the stage's pool (v2d_transcode, v2d_analysis) lets one run in at a time
            assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), (stage, spans)
