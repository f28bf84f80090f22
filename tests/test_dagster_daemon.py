"""A backfill launched through GraphQL on ``dagster dev`` (webserver + daemon) on 127.0.0.1.

Slow by nature: the backfill daemon looks for new backfills every 30 s, and each run starts a
process that loads the code. About a minute.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, REPO, write_dataset
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
