"""A real local Dagster deployment for tests and benchmarks: ``dagster dev`` on 127.0.0.1, driven by GraphQL.

``dagster dev`` runs the webserver and the daemon (run queue, backfills, sensors) over the
project's ``workspace.yaml``, with ``DAGSTER_HOME`` and ``V2D_DATASETS_DIR`` given here::

    with LocalDagster(home, datasets) as dagster:
        backfill = dagster.launch_backfill(["example", "download"], ["00000", "00001"])
        dagster.wait_for_backfill(backfill, timeout=300)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import dagster as dg
import requests

from v2d_dagster.factory import build_definitions
from v2d_dagster.spec import DATASETS_DIR_ENV

REPO = Path(__file__).resolve().parents[1]
DONE_STATUSES = frozenset({"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"})

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on PythonError { message }
  }
}
"""


SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status ticks(limit: 20) { status timestamp } } }
    ... on PythonError { message }
  }
}
"""


RUN_STATUS = """
query Run($id: ID!) {
  runOrError(runId: $id) {
    __typename
    ... on Run { status }
    ... on PythonError { message }
  }
}
"""


def plan_dataset(home: Path, datasets_dir: Path, name: str) -> list[str]:
    """Materialize ``{name}/shard_plan`` in the instance at ``home``; the shard partitions it registered."""
    defs = build_definitions(str(datasets_dir))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = dg.materialize(
            list(defs.assets), selection=[dg.AssetKey([name, "shard_plan"])], instance=instance
        )
        if not result.success:
            raise RuntimeError(f"{name}/shard_plan failed")
        return list(instance.get_dynamic_partitions(f"{name}_shards"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _interruptible() -> None:
    """In the child before exec: SIGINT back to its default. A process started in the background
    by a non-interactive shell (CI, a job runner) inherits SIGINT ignored, and ``dagster dev``
    maps SIGTERM to whatever SIGINT does: it would then ignore both and never stop cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LocalDagster:
    """``dagster dev`` over the project's workspace in a subprocess; a context manager."""

    def __init__(
        self,
        home: Path,
        datasets_dir: Path | None,
        *,
        port: int | None = None,
        log_path: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        project: Path = REPO,
        dg_dev: bool = False,
    ) -> None:
        """``datasets_dir`` None: the datasets of ``project``'s defs folder. ``dg_dev``: start
        ``dg dev`` in ``project`` instead of ``dagster dev`` over its ``workspace.yaml``."""
        self.home = home
        self.port = port or free_port()
        self.log_path = log_path or home / "dagster_dev.log"
        self.project = project
        self.dg_dev = dg_dev
        env = {key: value for key, value in os.environ.items() if key != DATASETS_DIR_ENV}
        self.env = {
            **env,
            "DAGSTER_HOME": str(home),
            **({DATASETS_DIR_ENV: str(datasets_dir)} if datasets_dir is not None else {}),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")])),
            **(extra_env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """``dagster dev`` over the project's workspace (or ``dg dev``): webserver and daemon, on a port."""
        if self.dg_dev:
            command = [str(Path(sys.executable).parent / "dg"), "dev"]
        else:
            command = [sys.executable, "-m", "dagster", "dev", "-w", str(self.project / "workspace.yaml")]
        return [*command, "-h", "127.0.0.1", "-p", str(self.port)]

    def start(self, timeout: float = 180) -> Self:
        """Start :meth:`command` and wait until it is :meth:`ready`."""
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.project,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_interruptible,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"{type(self).__name__} exited with {code}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{type(self).__name__} not ready in {timeout} s; see {self.log_path}")
            time.sleep(0.5)
        return self

    def ready(self) -> bool:
        """Whether the GraphQL endpoint answers."""
        try:
            return requests.get(f"{self.url}/server_info", timeout=2).ok
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        """Stop the command and the processes it started (its own process group)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL request; its ``data``, or an error naming GraphQL's complaint."""
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def launch_backfill(
        self, asset_key: Sequence[str], partitions: Sequence[str], also: Sequence[Sequence[str]] = ()
    ) -> str:
        """Launch a backfill of ``partitions`` of ``asset_key`` (and of the assets ``also``); its id."""
        keys = [asset_key, *also]
        params = {"partitionNames": list(partitions), "assetSelection": [{"path": list(key)} for key in keys]}
        result = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {result}")
        return result["backfillId"]

    def launch_range_run(self, job_name: str, first: str, last: str) -> str:
        """Launch one run of ``job_name`` over partitions ``first``..``last`` (no backfill daemon); its id."""
        selector = {"repositoryLocationName": "v2d", "repositoryName": "__repository__", "jobName": job_name}
        tags = [
            {"key": "dagster/asset_partition_range_start", "value": first},
            {"key": "dagster/asset_partition_range_end", "value": last},
        ]
        params = {"selector": selector, "executionMetadata": {"tags": tags}, "runConfigData": {}}
        result = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"run not launched: {result}")
        return result["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        """``QUEUED``, ``STARTED``, ``SUCCESS``, ``FAILURE``..."""
        result = self.graphql(RUN_STATUS, {"id": run_id})["runOrError"]
        if result["__typename"] != "Run":
            raise RuntimeError(f"no run {run_id}: {result}")
        return result["status"]

    def sensor_ticks(self, name: str) -> list[str]:
        """Statuses of the sensor's latest ticks, newest first (``SUCCESS``, ``SKIPPED``...)."""
        selector = {"repositoryLocationName": "v2d", "repositoryName": "__repository__", "sensorName": name}
        result = self.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        if result["__typename"] != "Sensor":
            raise RuntimeError(f"no sensor {name}: {result}")
        return [tick["status"] for tick in result["sensorState"]["ticks"]]

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float, poll: float = 0.5) -> None:
        """Poll ``predicate`` until it holds; a TimeoutError naming ``what`` if it never does."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {timeout} s; see {self.log_path}")
            time.sleep(poll)

    def backfill_status(self, backfill_id: str) -> str:
        """``REQUESTED``, ``COMPLETED_SUCCESS``, ``FAILED``..."""
        result = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if result["__typename"] != "PartitionBackfill":
            raise RuntimeError(f"no backfill {backfill_id}: {result}")
        return result["status"]

    def materialized_partitions(self, asset_key: Sequence[str]) -> set[str]:
        """Partitions of ``asset_key`` with a materialization, read from the instance's storage."""
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            return set(instance.get_materialized_partitions(dg.AssetKey(list(asset_key))))

    def materialized_since(self, asset_key: Sequence[str], partitions: Sequence[str], since: float) -> bool:
        """Whether every one of ``partitions`` of ``asset_key`` has a materialization newer than ``since``."""
        key = dg.AssetKey(list(asset_key))
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            for partition in partitions:
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
                ).records
                if not records or records[0].timestamp < since:
                    return False
        return True

    def backfill_runs(self, backfill_id: str) -> list[tuple[float, float, float]]:
        """(created, started, ended) timestamps of the finished runs the backfill launched."""
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        return sorted(
            (r.create_timestamp.timestamp(), r.start_time, r.end_time)
            for r in records
            if r.start_time and r.end_time
        )

    def wait_for_backfill(self, backfill_id: str, timeout: float, poll: float = 0.5) -> str:
        """Poll until the backfill is done; its final status."""
        deadline = time.monotonic() + timeout
        while (status := self.backfill_status(backfill_id)) not in DONE_STATUSES:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} still {status} after {timeout} s")
            time.sleep(poll)
        return status
