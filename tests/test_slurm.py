"""deploy/slurm: the rendered sbatch array script, and one array task run by bash as Slurm would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.helpers import stats, write_csv
from v2d_core.testing.server import MediaServer
from v2d_dagster.testing import plan_dataset

REPO = Path(__file__).resolve().parents[1]
RENDER = REPO / "deploy" / "slurm" / "render.py"


def subprocess_env(**extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, **extra}


@pytest.fixture
def planned(tmp_path: Path, media_server: MediaServer) -> tuple[Path, Path]:
    """Dataset ``clips``: 7 rows in shards of 2 (00000..00003), planned in a fresh Dagster home."""
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    rows = [{"url": media_server.url("files", f"video_000{i % 4}.mp4"), "caption": f"c{i}"} for i in range(7)]
    write_csv(datasets / "clips.csv", rows)
    spec = {
        "name": "clips",
        "url_list": "clips.csv",
        "input_format": "csv",
        "caption_col": "caption",
        "output_root": "out",
        "stages": {
            "download": {
                "output_format": "webdataset",
                "number_sample_per_shard": 2,
                "processes_count": 1,
                "thread_count": 2,
                "timeout": 10,
                "shards_per_run": 3,
            }
        },
    }
    (datasets / "clips.yaml").write_text(yaml.safe_dump(spec))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    assert sorted(plan_dataset(home, datasets, "clips")) == ["00000", "00001", "00002", "00003"]
    return datasets, home


def render(datasets: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(RENDER), "--dataset", "clips", "--datasets-dir", str(datasets)]
    command += ["--dagster-home", str(home), "--workdir", str(REPO), "--log-dir", str(home), *args]
    return subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=120)


def run_task(script: Path, task: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(SLURM_CPUS_PER_TASK="2")
    env.pop("SLURM_ARRAY_TASK_ID", None)
    if task is not None:
        env["SLURM_ARRAY_TASK_ID"] = task
    return subprocess.run(
        ["bash", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_one_array_task_materializes_its_shards_and_no_others(
    planned: tuple[Path, Path], tmp_path: Path
) -> None:
    datasets, home = planned
    rendered = render(datasets, home, "--shards-per-task", "2", "--cpus", "2", "--max-parallel", "8")
    assert rendered.returncode == 0, rendered.stderr
    script = tmp_path / "clips.sbatch"
    script.write_text(rendered.stdout)

    directives = re.findall(r"^#SBATCH (.*)$", rendered.stdout, flags=re.MULTILINE)
    assert "--array=0-1%8" in directives  # 4 shards, 2 per task
    assert "--cpus-per-task=2" in directives
    assert f"--output={home}/%x-%A_%a.out" in directives
    assert "${V2D_" not in rendered.stdout
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0

    done = run_task(script, "1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "task 1: shards 00002..00003 of clips/download" in done.stdout

    output = datasets / "out" / "download"
    assert sorted(stats(output)) == ["00002", "00003"]
    assert sorted(path.name for path in output.glob("*.tar")) == ["00002.tar", "00003.tar"]
    assert sum(shard["successes"] for shard in stats(output).values()) == 3  # rows 4, 5, 6
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey(["clips", "download"])) == {"00002", "00003"}
        [run] = instance.get_runs(dg.RunsFilter(job_name="clips_download"))
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/asset_partition_range_start"] == "00002"
    assert run.tags["dagster/asset_partition_range_end"] == "00003"
    assert run.run_config == {"ops": {"clips__download": {"config": {"processes_count": 2}}}}


def test_a_task_past_the_last_shard_does_nothing_and_sbatch_is_needed(
    planned: tuple[Path, Path], tmp_path: Path
) -> None:
    datasets, home = planned
    rendered = render(datasets, home, "--shards-per-task", "3")
    assert rendered.returncode == 0, rendered.stderr
    assert "#SBATCH --array=0-1%50" in rendered.stdout  # 4 shards, 3 per task: 2 tasks
    script = tmp_path / "clips.sbatch"
    script.write_text(rendered.stdout)

    beyond = run_task(script, "2", cwd=tmp_path)
    assert beyond.returncode == 0 and "task 2: no shards (the dataset has 4)" in beyond.stdout
    outside = run_task(script, None, cwd=tmp_path)
    assert outside.returncode != 0 and "SLURM_ARRAY_TASK_ID is not set" in outside.stderr
    assert not (datasets / "out" / "download").exists()


def test_render_without_a_plan_says_to_materialize_it(tmp_path: Path, media_server: MediaServer) -> None:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    write_csv(datasets / "clips.csv", [{"url": media_server.url("files", "video_0000.mp4")}])
    spec = {"name": "clips", "url_list": "clips.csv", "input_format": "csv", "output_root": "out"}
    (datasets / "clips.yaml").write_text(yaml.safe_dump({**spec, "stages": {"download": {}}}))
    rendered = render(datasets, tmp_path)
    assert rendered.returncode == 2
    assert "materialize the dataset's shard_plan first" in rendered.stderr
    wrong_stage = render(datasets, tmp_path, "--stage", "downsample")
    assert "dataset clips has no stage 'downsample'" in wrong_stage.stderr
