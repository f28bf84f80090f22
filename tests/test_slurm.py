"""Slurm, for real: ``distributor: slurm`` (video2dataset 1.3.0's keys) and deploy/slurm's Dagster array,
each submitted with sbatch to a single-node Slurm the tests start (tests/slurm_cluster.py).

Without Debian's slurmctld, slurmd, slurm-client and munge these tests skip, naming what is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.helpers import stats, status_rows, write_csv
from tests.slurm_cluster import INSTALL, Slurm, missing_programs, slurm_cluster
from v2d_core import video2dataset
from v2d_core.config import Config
from v2d_core.runners.sbatch import SlurmArgs, SlurmError
from v2d_core.testing.server import MediaServer
from v2d_dagster.testing import plan_dataset

REPO = Path(__file__).resolve().parents[1]
RENDER = REPO / "deploy" / "slurm" / "render.py"
FAST = {"thread_count": 2, "show_progress": False, "timeout": 10, "retry_backoff": 0.01}


@pytest.fixture(scope="module")
def slurm() -> Iterator[Slurm]:
    missing = missing_programs()
    if missing:
        pytest.skip(f"Slurm is not installed, missing: {', '.join(missing)} ({INSTALL})")
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs slurmd as root (SlurmdUser=root): run the Slurm tests as root")
    with slurm_cluster() as cluster:
        yield cluster


@pytest.fixture
def slurm_env(slurm: Slurm, monkeypatch: pytest.MonkeyPatch) -> Slurm:
    """The cluster, with ``SLURM_CONF`` set for this process (and the runs it submits)."""
    for name, value in slurm.env.items():
        monkeypatch.setenv(name, value)
    return slurm


def subprocess_env(**extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, **extra}


def rounds(cache: Path) -> set[Path]:
    """The job arrays the distributor submitted: one folder each under ``cache_path``."""
    return set(cache.iterdir()) if cache.exists() else set()


def directives(script: Path) -> list[str]:
    return re.findall(r"^#SBATCH (.*)$", script.read_text(), flags=re.MULTILINE)


def url_list(folder: Path, media_server: MediaServer, count: int, route: str = "files") -> Path:
    rows = [
        {"url": media_server.url(route, f"video_000{i % 4}.mp4"), "caption": f"c{i}"} for i in range(count)
    ]
    return write_csv(folder / "videos.csv", rows)


# distributor: slurm


def test_cli_distributor_slurm_runs_the_shards_as_one_job_array(
    slurm: Slurm, media_server: MediaServer, tmp_path: Path
) -> None:
    videos = url_list(tmp_path, media_server, 7)
    cache = tmp_path / "slurm_cache"
    distributor_args = {
        "cpus_per_task": 1,
        "job_name": "v2ds",
        "partition": "debug",
        "n_nodes": 1,
        "tasks_per_node": 2,
        "cache_path": str(cache),
        "verbose_wait": True,
    }
    done = subprocess.run(
        [
            *(sys.executable, "-m", "v2d_core.cli", f"--url_list={videos}", "--input_format=csv"),
            *("--url_col=url", "--caption_col=caption", f"--output_folder={tmp_path / 'dataset'}"),
            *("--output_format=webdataset", "--number_sample_per_shard=2", "--processes_count=1"),
            *("--thread_count=2", "--distributor=slurm"),
            f"--distributor_args={json.dumps(distributor_args)}",
        ],
        env=subprocess_env(**slurm.env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    output = tmp_path / "dataset"
    assert sorted(stats(output)) == ["00000", "00001", "00002", "00003"]
    assert sorted(row["key"] for row in status_rows(output)) == [f"0000{i // 2}{i % 2}" for i in range(7)]
    assert {row["status"] for row in status_rows(output)} == {"success"}
    [array] = rounds(cache)
    assert {
        "--job-name=v2ds",
        "--array=0-1%2",  # n_nodes x tasks_per_node tasks share the 4 shards
        "--cpus-per-task=1",
        "--partition=debug",
        f"--chdir={tmp_path}",
    } <= set(directives(array / "v2d.sbatch"))
    [job_id] = set(re.findall(r"slurm job (\d+):", done.stderr))  # verbose_wait
    assert sorted(path.name for path in (array / "logs").iterdir()) == [f"{job_id}_0.out", f"{job_id}_1.out"]
    assert not (array / "round.pkl").exists()
    assert slurm.jobs() == []


def test_max_shard_retry_resubmits_the_failed_shards_and_a_rerun_resumes(
    slurm_env: Slurm, media_server: MediaServer, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "scratch"
    not_a_folder.write_text("a file where tmp_dir should be a folder")
    cache, output = tmp_path / "cache", tmp_path / "dataset"
    args = {
        "url_list": str(url_list(tmp_path, media_server, 3)),
        "input_format": "csv",
        "output_folder": str(output),
        "number_sample_per_shard": 2,
        "processes_count": 1,
        "distributor": "slurm",
        "distributor_args": {"cpus_per_task": 1, "tasks_per_node": 2, "cache_path": str(cache)},
        **FAST,
    }

    failed = video2dataset(**args, tmp_dir=str(not_a_folder), max_shard_retry=1)
    assert sorted(failed.failed_shards) == [0, 1]
    assert all(error.startswith("FileExistsError") for error in failed.failed_shards.values())
    first = rounds(cache)
    assert len(first) == 2  # the first attempt and one retry, each an array over both shards
    assert all("--array=0-1%2" in directives(array / "v2d.sbatch") for array in first)
    assert stats(output) == {}

    resumed = video2dataset(**args, tmp_dir=str(tmp_path / "tmp"))
    assert resumed.failed_shards == {} and sorted(r.shard_id for r in resumed.results) == [0, 1]
    assert sorted(stats(output)) == ["00000", "00001"]
    kept = (output / "00000_stats.json").stat().st_mtime_ns
    (output / "00001_stats.json").unlink()  # as if the run had been killed before shard 1 was done

    before = rounds(cache)
    again = video2dataset(**args, tmp_dir=str(tmp_path / "tmp"))
    [array] = rounds(cache) - before
    assert "--array=0-0%1" in directives(array / "v2d.sbatch")  # only the shard that is missing
    assert again.skipped_shards == [0] and [r.shard_id for r in again.results] == [1]
    assert (output / "00000_stats.json").stat().st_mtime_ns == kept
    assert sum(shard["successes"] for shard in stats(output).values()) == 3


def test_timeout_cancels_the_array_and_its_unfinished_shards_fail(
    slurm_env: Slurm, media_server: MediaServer, tmp_path: Path
) -> None:
    summary = video2dataset(
        url_list=str(url_list(tmp_path, media_server, 1, route="stall")),
        input_format="csv",
        output_folder=str(tmp_path / "dataset"),
        processes_count=1,
        max_shard_retry=0,
        distributor="slurm",
        distributor_args={"timeout": 1, "cache_path": str(tmp_path / "cache")},
        **{**FAST, "timeout": 600},  # the fetch would stall far longer than the array may run
    )
    assert list(summary.failed_shards) == [0]
    assert "was cancelled after the timeout of 1 s" in summary.failed_shards[0]
    assert slurm_env.jobs() == []


def test_a_partition_slurm_refuses_is_a_clear_error(
    slurm_env: Slurm, media_server: MediaServer, tmp_path: Path
) -> None:
    with pytest.raises(SlurmError, match="invalid partition specified: gpu"):
        video2dataset(
            url_list=str(url_list(tmp_path, media_server, 1)),
            input_format="csv",
            output_folder=str(tmp_path / "dataset"),
            distributor="slurm",
            distributor_args={"partition": "gpu", "cache_path": str(tmp_path / "cache")},
            **FAST,
        )
    assert stats(tmp_path / "dataset") == {}


def test_ctrl_c_cancels_the_array(slurm: Slurm, media_server: MediaServer, tmp_path: Path) -> None:
    distributor_args = {"cache_path": str(tmp_path / "cache"), "verbose_wait": True}
    log = tmp_path / "log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "v2d_core.cli", "--input_format=csv", "--timeout=600"),
                f"--url_list={url_list(tmp_path, media_server, 1, route='stall')}",
                *(f"--output_folder={tmp_path / 'dataset'}", "--processes_count=1", "--distributor=slurm"),
                f"--distributor_args={json.dumps(distributor_args)}",
            ],
            env=subprocess_env(**slurm.env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_interruptible,
        )
    try:
        while " RUNNING" not in log.read_text():  # the run is waiting for its running array
            assert process.poll() is None, log.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130, log.read_text()
    finally:
        process.kill()
        process.wait()
    assert "run the same command to resume" in log.read_text()
    assert slurm.jobs() == []


def _interruptible() -> None:
    """SIGINT back to its default in the child (a background shell may have left it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("distributor_args", "named"),
    [
        ('{"cpu_per_task": 4}', "unknown key(s) in distribution.distributor_args for distributor slurm: "),
        ('{"n_nodes": 0}', "distribution.distributor_args.n_nodes must be an integer >= 1, got 0"),
        ('{"partition": "a b"}', "distribution.distributor_args.partition must be a word"),
        ('{"timeout": -5}', "distribution.distributor_args.timeout must be a number of seconds > 0"),
    ],
)
def test_bad_distributor_args_exit_2_naming_the_key_before_any_work(
    tmp_path: Path, distributor_args: str, named: str
) -> None:
    (tmp_path / "videos.txt").write_text("http://127.0.0.1:9/video.mp4\n")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "v2d_core.cli", "--url_list=videos.txt", "--output_folder=dataset"),
            *("--distributor=slurm", f"--distributor_args={distributor_args}"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert named in done.stderr
    assert not (tmp_path / "dataset").exists() and not (tmp_path / ".video2dataset_cache").exists()


def test_video2dataset_1_3_0_slurm_config_loads_as_is() -> None:
    """The distribution section of 1.3.0's examples/default_slurm.yaml, verbatim."""
    text = """
distribution:
    processes_count: 1
    thread_count: 8
    subjob_size: 1000
    distributor: "slurm"
    distributor_args:
        cpus_per_task: 16
        job_name: "v2ds"
        partition: "<NODE_NAME>"
        n_nodes: 2
        account: "<YOUR_ACCOUNT>"
        cache_path: "<YOUR_HOME>/.slurm_cache"
"""
    distribution = Config.from_mapping(yaml.safe_load(text)).distribution
    args = SlurmArgs.from_mapping(distribution.distributor_args)
    assert (args.cpus_per_task, args.n_nodes, args.tasks_per_node, args.parallel_tasks) == (16, 2, 1, 2)
    assert (args.partition, args.account, args.timeout, args.verbose_wait) == (
        "<NODE_NAME>",
        "<YOUR_ACCOUNT>",
        None,
        False,
    )


# deploy/slurm: the Dagster path


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


def render(
    datasets: Path, home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(RENDER), "--dataset", "clips", "--datasets-dir", str(datasets)]
    command += ["--dagster-home", str(home), "--workdir", str(REPO), "--log-dir", str(home), *args]
    env = subprocess_env(**(env or {}))
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)


def test_the_rendered_array_runs_on_slurm_each_task_materializing_its_shards(
    planned: tuple[Path, Path], tmp_path: Path, slurm: Slurm
) -> None:
    datasets, home = planned
    options = ["--shards-per-task", "2", "--cpus", "1", "--max-parallel", "8", "--partition", "debug"]
    options += ["--mem", "500M", "--time", "00:30:00"]
    rendered = render(datasets, home, *options)
    assert rendered.returncode == 0, rendered.stderr
    found = re.findall(r"^#SBATCH (.*)$", rendered.stdout, flags=re.MULTILINE)
    assert {"--array=0-1%8", "--cpus-per-task=1", "--partition=debug"} <= set(found)  # 4 shards, 2 a task
    assert f"--output={home}/%x-%A_%a.out" in found
    assert "${V2D_" not in rendered.stdout

    submitted = render(datasets, home, *options, "--submit", "--wait", env=slurm.env)
    assert submitted.returncode == 0, submitted.stderr
    [job_id] = re.findall(r"as Slurm job (\d+)", submitted.stdout)
    assert (home / "v2d-clips-download.sbatch").read_text() == rendered.stdout
    task_logs = {path.name: path.read_text() for path in home.glob("*.out")}
    assert sorted(task_logs) == [f"v2d-clips-download-{job_id}_0.out", f"v2d-clips-download-{job_id}_1.out"]
    assert "task 1: shards 00002..00003 of clips/download" in task_logs[f"v2d-clips-download-{job_id}_1.out"]

    output = datasets / "out" / "download"
    assert sorted(stats(output)) == ["00000", "00001", "00002", "00003"]
    assert sum(shard["successes"] for shard in stats(output).values()) == 7
    with dg.DagsterInstance.from_config(str(home)) as instance:
        materialized = instance.get_materialized_partitions(dg.AssetKey(["clips", "download"]))
        runs = instance.get_runs(dg.RunsFilter(job_name="clips_download"))
    assert materialized == {"00000", "00001", "00002", "00003"}
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)
    tags = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
    assert sorted(tuple(run.tags[tag] for tag in tags) for run in runs) == [
        ("00000", "00001"),
        ("00002", "00003"),
    ]
    one_process = {"ops": {"clips__download": {"config": {"processes_count": 1}}}}
    assert all(run.run_config == one_process for run in runs)
    assert slurm.jobs() == []


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
