"""The pyspark distributor on a local Spark session: the same shards, keys and outputs as multiprocessing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from tests.helpers import stats, status_rows, video2dataset_cli
from v2d_core import RunSummary, video2dataset
from v2d_core.testing.server import MediaServer

# pyspark reads collect() results from a local socket it leaves to the garbage collector to close
# (pyspark/rdd.py, _load_from_socket), which Python reports as an unclosed socket.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")

FAST = {"thread_count": 2, "show_progress": False, "timeout": 2, "retry_backoff": 0.01}
ROWS = 9
PER_SHARD = 2
# Keep the driver on loopback (no hostname lookup warning); executors run this interpreter.
LOCAL_SPARK_ENV = {"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable}


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """One local Spark session for the module (2 cores, no UI, on 127.0.0.1), stopped at the end."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in LOCAL_SPARK_ENV.items():
            patch.setenv(name, value)
        session = (
            SparkSession.builder.master("local[2]")
            .appName("v2d-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        try:
            yield session
        finally:
            session.stop()


@pytest.fixture(scope="module")
def url_list(tmp_path_factory: pytest.TempPathFactory, media_server: MediaServer) -> Path:
    """A parquet of 9 rows (5 shards of 2): 8 videos and a 404, each with its own caption."""
    urls = [media_server.url("files", f"video_000{i % 4}.mp4") for i in range(ROWS - 1)]
    urls.insert(5, media_server.url("status/404", "missing.mp4"))
    path = tmp_path_factory.mktemp("spark_input") / "videos.parquet"
    pq.write_table(pa.table({"url": urls, "caption": [f"row {i}" for i in range(ROWS)]}), path)
    return path


def download(url_list: Path, output: Path, **options: Any) -> RunSummary:
    return video2dataset(
        url_list=str(url_list),
        input_format="parquet",
        caption_col="caption",
        output_folder=str(output),
        output_format="webdataset",
        number_sample_per_shard=PER_SHARD,
        processes_count=2,
        **FAST,
        **options,
    )


@pytest.fixture(scope="module")
def reference(url_list: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset the multiprocessing distributor writes from ``url_list``."""
    output = tmp_path_factory.mktemp("reference") / "dataset"
    download(url_list, output, distributor="multiprocessing")
    return output


def tar_members(output: Path) -> dict[str, bytes]:
    """``{shard}/{member}`` -> bytes of every tar in ``output``."""
    members = {}
    for path in sorted(output.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member)
                assert handle is not None
                members[f"{path.stem}/{member.name}"] = handle.read()
    return members


def comparable_rows(output: Path) -> list[dict[str, Any]]:
    return sorted(status_rows(output), key=lambda row: row["key"])


def test_spark_writes_the_same_dataset_as_multiprocessing(
    spark: SparkSession, url_list: Path, reference: Path, tmp_path: Path
) -> None:
    tracker = spark.sparkContext.statusTracker()
    jobs_before = set(tracker.getJobIdsForGroup())
    output = tmp_path / "dataset"
    summary = download(url_list, output, distributor="pyspark", subjob_size=2)

    assert summary.failed_shards == {}
    assert sorted(result.shard_id for result in summary.results) == [0, 1, 2, 3, 4]
    assert summary.totals["count"] == ROWS and summary.totals["failed_to_download"] == 1
    rows = comparable_rows(output)
    assert sorted(row["caption"] for row in rows) == sorted(f"row {i}" for i in range(ROWS))
    assert rows == comparable_rows(reference)
    assert sorted(stats(output)) == sorted(stats(reference)) == [f"0000{i}" for i in range(5)]
    assert tar_members(output) == tar_members(reference)
    # subjob_size=2: five shards run as Spark jobs of 2, 2 and 1 tasks.
    new_jobs = sorted(set(tracker.getJobIdsForGroup()) - jobs_before)
    tasks = []
    for job_id in new_jobs:
        job = tracker.getJobInfo(job_id)
        assert job is not None
        tasks.append(sum(tracker.getStageInfo(stage).numTasks for stage in job.stageIds))
    assert tasks == [2, 2, 1]
    assert not (output / "_tmp").exists()


def test_resume_on_spark_skips_done_shards(
    spark: SparkSession, url_list: Path, reference: Path, tmp_path: Path
) -> None:
    config = tmp_path / "spark.yaml"
    config.write_text("distribution:\n  distributor: pyspark\n  subjob_size: 3\n")
    output = tmp_path / "dataset"
    download(url_list, output, config=str(config))
    kept = {name: (output / f"{name}_stats.json").stat().st_mtime_ns for name in ("00000", "00003")}
    for path in output.glob("0000[124]*"):  # shards 1, 2 and 4 never finished
        path.unlink()

    summary = download(url_list, output, config=str(config))

    assert summary.skipped_shards == [0, 3]
    assert sorted(result.shard_id for result in summary.results) == [1, 2, 4]
    assert {name: (output / f"{name}_stats.json").stat().st_mtime_ns for name in kept} == kept
    assert comparable_rows(output) == comparable_rows(reference)
    assert tar_members(output) == tar_members(reference)


def test_a_shard_that_raises_is_retried_then_reported(
    spark: SparkSession, media_server: MediaServer, tmp_path: Path
) -> None:
    url_list = tmp_path / "urls.txt"
    url_list.write_text("".join(media_server.url("files", f"video_000{i}.mp4") + "\n" for i in range(3)))
    not_a_folder = tmp_path / "scratch"
    not_a_folder.write_text("a file where tmp_dir should be a folder")
    output = tmp_path / "dataset"

    summary = video2dataset(
        url_list=str(url_list),
        input_format="txt",
        output_folder=str(output),
        number_sample_per_shard=PER_SHARD,
        distributor="pyspark",
        tmp_dir=str(not_a_folder),
        max_shard_retry=1,
        **FAST,
    )

    assert summary.results == []
    assert sorted(summary.failed_shards) == [0, 1]
    assert all(error.startswith("FileExistsError") for error in summary.failed_shards.values())
    assert stats(output) == {}


def _workers_fetching_from(port: int) -> list[psutil.Process]:
    """pyspark's Python workers under this process with a connection open to ``port``."""
    workers = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "pyspark.daemon" in process.cmdline() and any(
                connection.raddr and connection.raddr.port == port
                for connection in process.net_connections("tcp")
            ):
                workers.append(process)
    return workers


def test_an_executor_lost_mid_shard_fails_the_spark_job_and_the_shard_is_retried(
    spark: SparkSession, media_server: MediaServer, tmp_path: Path
) -> None:
    url_list = tmp_path / "slow.txt"
    url_list.write_text(media_server.url("delay/2", "video_0001.mp4") + "\n")
    output = tmp_path / "dataset"
    outcome: list[RunSummary | BaseException] = []

    def run() -> None:
        try:
            outcome.append(
                video2dataset(
                    url_list=str(url_list),
                    input_format="txt",
                    output_folder=str(output),
                    distributor="pyspark",
                    **{**FAST, "timeout": 30},
                )
            )
        except BaseException as error:
            outcome.append(error)

    runner = threading.Thread(target=run)
    runner.start()
    port = urlsplit(media_server.base_url).port
    assert port is not None
    deadline = time.monotonic() + 120
    while not (workers := _workers_fetching_from(port)):  # the shard is fetching its slow video
        assert time.monotonic() < deadline and runner.is_alive(), outcome
        time.sleep(0.05)
    assert len(workers) == 1
    workers[0].kill()
    runner.join(timeout=120)

    summary = outcome[0]
    assert isinstance(summary, RunSummary), summary
    assert summary.failed_shards == {}
    assert [(result.shard_id, result.successes) for result in summary.results] == [(0, 1)]
    assert stats(output)["00000"]["successes"] == 1


def test_cli_distributor_pyspark_starts_a_local_session(
    url_list: Path, reference: Path, tmp_path: Path
) -> None:
    output = tmp_path / "dataset"
    done = video2dataset_cli(
        f"--url_list={url_list}",
        "--input_format=parquet",
        "--caption_col=caption",
        f"--output_folder={output}",
        "--output_format=webdataset",
        f"--number_sample_per_shard={PER_SHARD}",
        "--distributor=pyspark",
        "--distributor_args={'spark.ui.enabled': 'false', 'spark.ui.showConsoleProgress': 'false'}",
        "--processes_count=2",
        "--thread_count=2",
        "--timeout=2",
        timeout=240,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert done.returncode == 0, done.stderr
    assert f"samples: {ROWS}, success: {ROWS - 1}, failed_to_download: 1" in done.stdout
    assert comparable_rows(output) == comparable_rows(reference)
    assert tar_members(output) == tar_members(reference)


def test_without_pyspark_the_error_names_the_extra_before_any_work(tmp_path: Path) -> None:
    url_list = tmp_path / "urls.txt"
    url_list.write_text("http://127.0.0.1:9/x.mp4\n")
    output = tmp_path / "dataset"
    hide_pyspark = (
        "import sys; sys.modules['pyspark'] = None; "  # what `import pyspark` sees when it is not installed
        "from v2d_core.cli import main; main()"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            hide_pyspark,
            f"--url_list={url_list}",
            "--input_format=txt",
            f"--output_folder={output}",
            "--distributor=pyspark",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert 'pip install "v2d[spark]"' in done.stderr
    assert "Traceback" not in done.stderr
    assert not output.exists()
