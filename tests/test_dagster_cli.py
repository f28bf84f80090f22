"""``dagster asset materialize`` for one shard in a subprocess, the project's dagster.yaml in its home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, REPO, materialize_plan, write_dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions


def test_dagster_cli_materializes_one_partition(tmp_path: Path, media_server: MediaServer) -> None:
    datasets = write_dataset(tmp_path / "datasets", media_server)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # the project's dagster.yaml: SQLite storage in DAGSTER_HOME, a queue of at most 2 runs
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
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
        [*command, "--select", "clips/download", "--partition", "00002"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    output = datasets / "out" / "download"
    assert list(stats(output)) == ["00002"]
    assert stats(output)["00002"]["failed_to_download"] == 1
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=DOWNLOAD, asset_partitions=["00002"]), limit=1
        ).records[0]
    assert record.asset_materialization is not None
    assert record.asset_materialization.metadata["samples"].value == 1
