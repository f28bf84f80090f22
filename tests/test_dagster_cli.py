"""``dagster asset materialize`` for one shard in a subprocess, the project's dagster.yaml in its home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.run_coordinator import QueuedRunCoordinator

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, REPO, materialize_plan, write_dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions


def test_dagster_cli_materializes_one_partition(tmp_path: Path, media_server: MediaServer) -> None:
    datasets = write_dataset(tmp_path / "datasets", media_server)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # the project's dagster.yaml: SQLite storage in DAGSTER_HOME, a queue of at most 2 runs that
        # tags each run by dataset and stage, pools of one run each by default
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
        materialize_plan(build_definitions(str(datasets)), instance)

    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "V2D_DATASETS_DIR": str(datasets),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "v2d_dagster.definitions"]
    done = subprocess.run(
        [*command, "--select", "clips/download", "--partition", "00001"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    output = datasets / "out" / "download"
    assert list(stats(output)) == ["00001"]
    assert stats(output)["00001"]["successes"] == 2
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=DOWNLOAD, asset_partitions=["00001"]), limit=1
        ).records[0]
        run = instance.get_run_by_id(record.run_id)
    assert record.asset_materialization is not None
    assert record.asset_materialization.metadata["samples"].value == 2
    assert run is not None and (run.tags["v2d/dataset"], run.tags["v2d/stage"]) == ("clips", "download")
