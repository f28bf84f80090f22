"""``dagster dev`` (webserver + daemon) on 127.0.0.1: a backfill launched through GraphQL, and
automation (sensors, automation conditions) running shards nobody launched.

Slow by nature: the backfill daemon looks for new backfills every 30 s, and each run starts a
process that loads the code. About a minute each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, REPO, write_dataset
from tests.test_dagster_stages import write_reels
from v2d_core.testing.server import MediaServer
from v2d_dagster.testing import LocalDagster, plan_dataset


@pytest.mark.timeout(420)
def test_daemon_backfill_through_graphql_materializes_every_shard_in_batches(
    tmp_path: Path, media_server: MediaServer
) -> None:
    datasets = write_dataset(tmp_path / "datasets", media_server, shards_per_run=2, processes_count=2)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
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
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
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
