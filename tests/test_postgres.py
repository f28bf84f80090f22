"""The PostgreSQL instance (deploy/dagster-postgres.yaml) against a real server on 127.0.0.1: the
webserver, the daemon and the runs of a backfill share one history, read back from PostgreSQL.

The server comes from Debian's postgresql package; without it these tests skip and say so.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.postgres_server import INSTALL_HINT, Postgres, find_binaries, postgres_server
from tests.test_dagster import DOWNLOAD, REPO, write_dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.testing import LocalDagster, plan_dataset


class Webserver(LocalDagster):
    """``dagster-webserver`` alone: the daemon is a process of its own, as on separate machines."""

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "dagster_webserver", "-w", str(REPO / "workspace.yaml")]
        return [*command, "-h", "127.0.0.1", "-p", str(self.port)]


class Daemon(LocalDagster):
    """``dagster-daemon run``: backfills, the run queue, sensors; it serves nothing to wait for."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "dagster._daemon", "run", "-w", str(REPO / "workspace.yaml")]

    def ready(self) -> bool:
        return True


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    binaries = find_binaries()
    if binaries is None:
        pytest.skip(INSTALL_HINT)
    with postgres_server(binaries) as server:
        yield server


@pytest.fixture
def home(tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME holding deploy/dagster-postgres.yaml; the connection in the environment."""
    connection = {
        "DAGSTER_POSTGRES_HOST": postgres.host,
        "DAGSTER_POSTGRES_PORT": str(postgres.port),
        "DAGSTER_POSTGRES_USER": postgres.user,
        "DAGSTER_POSTGRES_PASSWORD": postgres.password,
        "DAGSTER_POSTGRES_DB": postgres.db_name,
    }
    for name, value in connection.items():
        monkeypatch.setenv(name, value)
    folder = tmp_path / "home"
    folder.mkdir()
    shutil.copy(REPO / "deploy" / "dagster-postgres.yaml", folder / "dagster.yaml")
    return folder


def rows(postgres: Postgres, query: str, *params: object) -> list[tuple]:
    with postgres.connect() as connection, connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


@pytest.mark.timeout(300)
def test_a_backfill_through_the_daemon_keeps_its_history_in_postgres(
    home: Path, postgres: Postgres, tmp_path: Path, media_server: MediaServer
) -> None:
    # min_success_rate 0: shard 00002 (one 404) would fail its blocking check, and this is about storage
    datasets = write_dataset(
        tmp_path / "datasets", media_server, shards_per_run=3, processes_count=2, min_success_rate=0.0
    )
    partitions = plan_dataset(home, datasets, "clips")
    assert partitions == ["00000", "00001", "00002"]
    registered = rows(
        postgres, "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s", "clips_shards"
    )
    assert sorted(partition for (partition,) in registered) == partitions

    # The backfill is stored before the daemon starts: its first pass launches the run.
    with Webserver(home, datasets, log_path=home / "webserver.log") as webserver:
        backfill = webserver.launch_backfill(DOWNLOAD.path, partitions)
        backfill_runs = dg.RunsFilter(tags={"dagster/backfill": backfill})
        with (
            Daemon(home, datasets, log_path=home / "daemon.log"),
            dg.DagsterInstance.from_config(str(home)) as instance,
        ):

            def materialized() -> bool:
                runs = instance.get_runs(backfill_runs)
                done = len(runs) == 1 and all(run.is_finished for run in runs)
                return done and set(instance.get_materialized_partitions(DOWNLOAD)) == set(partitions)

            webserver.wait_until("the backfill's run finished", materialized, timeout=240)
            runs = instance.get_runs(backfill_runs)
        # the webserver reads the same history
        assert [webserver.run_status(run.run_id) for run in runs] == ["SUCCESS"]

    # Read back from PostgreSQL itself: the runs, their shards' materializations, the backfill.
    run_ids = {run.run_id for run in runs}
    stored = rows(postgres, "SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", list(run_ids))
    assert dict(stored) == dict.fromkeys(run_ids, "SUCCESS")
    materializations = rows(
        postgres,
        "SELECT run_id, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        " AND asset_key = %s",
        DOWNLOAD.to_string(),
    )
    assert sorted(partition for _, partition in materializations) == partitions
    assert {run_id for run_id, _ in materializations} == run_ids
    assert rows(postgres, "SELECT key FROM bulk_actions WHERE key = %s", backfill) == [(backfill,)]
    assert sorted(path.name for path in home.rglob("*.db")) == []  # no SQLite storage beside it
