"""The command lines: ``dagster asset materialize`` for one shard, and the ``dg`` project in a fresh clone
(``dg scaffold defs``, ``dg check defs``, ``dg list defs``, ``dg launch``, ``dg dev``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.run_coordinator import QueuedRunCoordinator

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, REPO, materialize_plan, write_dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions
from v2d_dagster.testing import LocalDagster


def test_dagster_cli_materializes_one_partition(tmp_path: Path, media_server: MediaServer) -> None:
    datasets = write_dataset(tmp_path / "datasets", media_server)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # deploy/dagster.yaml: SQLite storage in DAGSTER_HOME, a queue of at most 2 runs that
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


DG = str(Path(sys.executable).parent / "dg")


def fresh_clone(dest: Path) -> Path:
    """The repository's files as a fresh clone of it holds them (tracked and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def dg_command(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dg *args`` in ``project`` with the test's virtualenv active and ``DAGSTER_HOME=home``;
    ``project``'s packages come first on the path, as when it is the one installed."""
    env = {key: value for key, value in os.environ.items() if key != "V2D_DATASETS_DIR"}
    env |= {"DAGSTER_HOME": str(home), "VIRTUAL_ENV": sys.prefix, "NO_COLOR": "1", "COLUMNS": "200"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        [DG, *args], cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def home_with_instance_config(folder: Path) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml, as README sets it up."""
    folder.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", folder / "dagster.yaml")
    return folder


def scaffold_clips(project: Path, home: Path, media_server: MediaServer) -> Path:
    """``dg scaffold defs`` a dataset ``clips``, then fill its url list with 4 served videos."""
    done = dg_command(project, home, "scaffold", "defs", "v2d_dagster.components.Dataset", "clips")
    assert done.returncode == 0, done.stderr[-3000:]
    folder = project / "v2d_dagster" / "defs" / "clips"
    component = yaml.safe_load((folder / "defs.yaml").read_text())
    assert component["type"] == "v2d_dagster.components.Dataset"
    assert component["attributes"]["name"] == "clips"
    urls = [media_server.url("files", f"video_000{i}.mp4") for i in range(4)]
    rows = "".join(f"{url},cap {i}\n" for i, url in enumerate(urls))
    (folder / "clips.csv").write_text("url,caption\n" + rows)
    component["attributes"]["stages"]["download"] |= {"number_sample_per_shard": 2, "processes_count": 1}
    (folder / "defs.yaml").write_text(yaml.safe_dump(component))
    return folder


def test_dg_scaffold_check_list_launch_in_a_fresh_clone(tmp_path: Path, media_server: MediaServer) -> None:
    project = fresh_clone(tmp_path / "v2d")
    home = home_with_instance_config(tmp_path / "dagster_home")
    scaffold_clips(project, home, media_server)

    checked = dg_command(project, home, "check", "defs")
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
    listed = dg_command(project, home, "list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    keys = {asset["asset_key"] for asset in json.loads(listed.stdout)["assets"]}
    assert {"clips/shard_plan", "clips/download", "example/download", "example/optical_flow"} <= keys

    outputs = [checked, listed]
    plan, shard = ["--assets", "clips/shard_plan"], ["--assets", "clips/download", "--partition", "00001"]
    for selection in (plan, shard):
        launched = dg_command(project, home, "launch", *selection)
        assert launched.returncode == 0, launched.stderr[-3000:]
        outputs.append(launched)
    shards = stats(project / "data" / "clips" / "download")  # output_root is relative to the clone
    assert list(shards) == ["00001"]
    assert shards["00001"]["successes"] == 2
    for output in outputs:  # neither superseded commands nor a misplaced instance config
        assert "Warning" not in output.stdout + output.stderr


def test_dg_check_defs_names_a_bad_dataset_key(tmp_path: Path, media_server: MediaServer) -> None:
    project = fresh_clone(tmp_path / "v2d")
    home = home_with_instance_config(tmp_path / "dagster_home")
    folder = scaffold_clips(project, home, media_server)
    component = yaml.safe_load((folder / "defs.yaml").read_text())
    component["attributes"]["stages"]["download"]["frame_rat"] = 8  # a typo of frame_rate
    (folder / "defs.yaml").write_text(yaml.safe_dump(component))

    checked = dg_command(project, home, "check", "defs")
    assert checked.returncode != 0
    assert "frame_rat" in checked.stdout + checked.stderr
    assert str(folder / "defs.yaml") in checked.stdout + checked.stderr


def test_dg_dev_serves_the_project_datasets(tmp_path: Path) -> None:
    project = fresh_clone(tmp_path / "v2d")
    home = home_with_instance_config(tmp_path / "dagster_home")
    with LocalDagster(home, None, project=project, dg_dev=True) as dagster:
        nodes = dagster.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
    assert {"/".join(node["assetKey"]["path"]) for node in nodes} == {
        "example/shard_plan",
        "example/shard_inputs",
        "example/download",
        "example/downsample",
        "example/optical_flow",
        "example_subset/shard_plan",  # the example's download tars through the subset stage
        "example_subset/shard_inputs",
        "example_subset/subset",
    }
    log = dagster.log_path.read_text()
    assert "SupersessionWarning" not in log
    assert "Found a dagster instance configuration" not in log
