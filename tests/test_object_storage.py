"""Datasets on object storage: url lists, shards and re-processing inputs on a real S3 server (moto).

Every path here is an ``s3://`` url handled by fsspec (s3fs); the server listens on 127.0.0.1.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import dagster as dg
import pytest
import yaml

from tests.object_store import CREDENTIALS, Bucket, configure_through_fsspec_only, new_bucket, s3_server
from v2d_core import video2dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions

FAST = {"processes_count": 2, "thread_count": 2, "show_progress": False, "timeout": 5, "retry_backoff": 0.01}

SHARD_1_FILES = [f"0000{row}.{ext}" for row in ("10", "11") for ext in ("json", "mp4", "txt")]

# Temporaries as writers name them (``.{name}.tmp-<uuid4 hex>``): one a live writer's, one a killed one's.
WRITING, KILLED = "a" * 32, "0123abcd" * 4


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    with new_bucket(s3_endpoint, monkeypatch) as bucket:
        yield bucket


def put_url_list(bucket: Bucket, server: MediaServer, path: str) -> str:
    """A csv of the 4 served videos and one 404 (5 rows: shards 00000, 00001, 00002 of 2 rows),
    uploaded to ``path``; its s3 url."""
    rows = [(server.url("files", f"video_000{i}.mp4"), f"cap {i}") for i in range(4)]
    rows.append((server.url("status/404", "gone.mp4"), "gone"))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["url", "caption"])
    writer.writerows(rows)
    bucket.fs.pipe_file(f"{bucket.name}/{path}", text.getvalue().encode())
    return bucket.url(path)


def test_download_from_a_url_list_on_s3_into_s3_then_a_subset_stage_from_s3_to_s3(
    s3: Bucket, media_server: MediaServer, tmp_path: Path
) -> None:
    url_list = put_url_list(s3, media_server, "lists/videos.csv")
    summary = video2dataset(
        url_list=url_list,
        input_format="csv",
        caption_col="caption",
        output_folder=s3.url("dataset"),
        output_format="webdataset",
        number_sample_per_shard=2,
        **FAST,
    )
    assert summary.totals["count"] == 5 and summary.totals["success"] == 4
    assert s3.names("dataset") == [
        f"0000{shard}{suffix}" for shard in range(3) for suffix in (".parquet", ".tar", "_stats.json")
    ]
    rows = s3.status_rows("dataset")
    assert [(row["key"], row["status"]) for row in rows] == [
        ("000000", "success"),
        ("000001", "success"),
        ("000010", "success"),
        ("000011", "success"),
        ("000020", "failed_to_download"),
    ]
    assert "404" in rows[-1]["error_message"]
    assert s3.tar_names("dataset/00001.tar") == SHARD_1_FILES
    stats = s3.stats("dataset")
    assert [stats[name]["successes"] for name in sorted(stats)] == [2, 2, 0]

    # Re-process two of its tars, from the command line, with a config file that is on S3 too.
    small = {"subsampling": {"ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale"}}}}
    s3.fs.pipe_file(f"{s3.name}/configs/small.yaml", json.dumps(small).encode())  # JSON is YAML
    subset = subprocess.run(
        cli(
            f"--url_list={s3.url('dataset/{00000..00001}.tar')}",
            "--input_format=webdataset",
            "--stage=subset",
            f"--output_folder={s3.url('small')}",
            "--output_format=webdataset",
            f"--config={s3.url('configs/small.yaml')}",
            "--processes_count=2",
        ),
        env=cli_env(s3, tmp_path, "fsspec_environment"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert subset.returncode == 0, subset.stderr
    assert sorted(s3.stats("small")) == ["00000", "00001"]
    assert [row["key"] for row in s3.status_rows("small")] == ["000000", "000001", "000010", "000011"]
    assert s3.tar_names("small/00001.tar") == s3.tar_names("dataset/00001.tar")
    with av.open(io.BytesIO(s3.tar_member("small/00001.tar", "000010.mp4"))) as video:
        assert min(video.streams.video[0].width, video.streams.video[0].height) == 64


def test_resume_on_s3_skips_done_shards_redoes_unfinished_ones_and_sweeps_temporaries(
    s3: Bucket, media_server: MediaServer
) -> None:
    args = {
        "url_list": put_url_list(s3, media_server, "videos.csv"),
        "input_format": "csv",
        "caption_col": "caption",
        "output_folder": s3.url("dataset"),
        "output_format": "files",
        "number_sample_per_shard": 2,
        **FAST,
    }
    assert video2dataset(**args).failed_shards == {}
    assert s3.names("dataset/00001") == SHARD_1_FILES
    first = {name: stats["start_time"] for name, stats in s3.stats("dataset").items()}

    again = video2dataset(**args)
    assert again.skipped_shards == [0, 1, 2] and again.results == []

    # What a run killed while committing shard 00001 leaves: its files and parquet moved into
    # place, its stats (written last) not, and a temporary of another writer.
    s3.fs.rm(f"{s3.name}/dataset/00001_stats.json")
    s3.fs.pipe_file(f"{s3.name}/dataset/.00001.parquet.tmp-{KILLED}", b"half a parquet")
    s3.fs.rm(f"{s3.name}/dataset/00001/0000011.mp4")
    resumed = video2dataset(**args)
    assert resumed.skipped_shards == [0, 2]
    assert [result.shard_id for result in resumed.results] == [1]
    stats = s3.stats("dataset")
    assert {name: stats[name]["start_time"] for name in ("00000", "00002")} == {
        name: first[name] for name in ("00000", "00002")
    }
    assert stats["00001"]["start_time"] > first["00001"] and stats["00001"]["successes"] == 2
    assert [name for name in s3.names("dataset") if "tmp" in name] == []
    assert s3.names("dataset/00001") == SHARD_1_FILES
    assert [row["key"] for row in s3.status_rows("dataset")] == [
        "000000",
        "000001",
        "000010",
        "000011",
        "000020",
    ]


def cli_env(bucket: Bucket, tmp_path: Path, how: str) -> dict[str, str]:
    """The environment of a ``video2dataset`` process that reaches the server through one kind of
    configuration only: the AWS SDK's variables, fsspec's ``FSSPEC_S3_*`` variables, or an fsspec
    config file."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "FSSPEC_"))}
    options = {
        "endpoint_url": bucket.endpoint,
        "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    if how == "aws_environment":
        env |= CREDENTIALS | {"AWS_ENDPOINT_URL": bucket.endpoint}
    elif how == "fsspec_environment":
        env |= {f"FSSPEC_S3_{name.upper()}": value for name, value in options.items()}
    else:
        folder = tmp_path / "fsspec"
        folder.mkdir(exist_ok=True)
        (folder / "s3.json").write_text(json.dumps({"s3": options}))
        env["FSSPEC_CONFIG_DIR"] = str(folder)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "v2d_core.cli", *args]


def test_a_killed_cli_leaves_no_finished_looking_shard_on_s3_and_resumes(
    s3: Bucket, media_server: MediaServer, tmp_path: Path
) -> None:
    urls = [media_server.url("delay/0.3", f"video_000{i % 4}.mp4") for i in range(12)]
    s3.fs.pipe_file(f"{s3.name}/urls.txt", "\n".join(urls).encode())
    args = cli(
        f"--url_list={s3.url('urls.txt')}",
        "--input_format=txt",
        f"--output_folder={s3.url('dataset')}",
        "--output_format=webdataset",
        "--number_sample_per_shard=2",
        "--processes_count=2",
        "--thread_count=2",
    )
    process = subprocess.Popen(
        args,
        env=cli_env(s3, tmp_path, "aws_environment"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not s3.stats("dataset"):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no shard finished in time"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)

    finished = set(s3.stats("dataset"))
    assert 1 <= len(finished) < 6
    for name in finished:  # a shard with stats is whole
        assert len(s3.tar_names(f"dataset/{name}.tar")) == 4
    resumed = subprocess.run(
        args, env=cli_env(s3, tmp_path, "fsspec_config_file"), capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    # Done before: the finished shards, plus any (one per worker) whose commit journal the kill
    # interrupted: the resume replays it first.
    skipped = re.search(r"(\d+) skipped \(done before\)", resumed.stdout)
    assert skipped is not None and len(finished) <= int(skipped.group(1)) <= len(finished) + 2
    rows = s3.status_rows("dataset")
    assert [row["key"] for row in rows] == [f"{shard:05d}{row}" for shard in range(6) for row in range(2)]
    assert {row["status"] for row in rows} == {"success"}
    for shard in range(6):
        assert len(s3.tar_names(f"dataset/{shard:05d}.tar")) == 4
    assert [name for name in s3.names("dataset") if name.startswith((".", "_"))] == []


def test_dagster_materializes_a_dataset_whose_output_root_is_on_s3(
    s3: Bucket, media_server: MediaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_through_fsspec_only(s3, monkeypatch)
    small = {"subsampling": {"ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale"}}}}
    spec = {
        "name": "clips",
        "url_list": put_url_list(s3, media_server, "clips.csv"),
        "input_format": "csv",
        "caption_col": "caption",
        "output_root": s3.url("clips"),
        "stages": {
            "download": {"output_format": "webdataset", "number_sample_per_shard": 2, "min_success_rate": 0.5}
            | {name: FAST[name] for name in ("processes_count", "thread_count", "timeout", "retry_backoff")},
            "downsample": {"config": small, "processes_count": 1},
        },
    }
    (tmp_path / "clips.yaml").write_text(yaml.safe_dump(spec))
    defs = build_definitions(str(tmp_path))
    assets = list(defs.assets)
    download, downsample = dg.AssetKey(["clips", "download"]), dg.AssetKey(["clips", "downsample"])
    batch = {"dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00002"}
    with dg.DagsterInstance.ephemeral() as instance:
        plan = dg.materialize(assets, selection=[dg.AssetKey(["clips", "shard_plan"])], instance=instance)
        assert plan.success
        assert instance.get_dynamic_partitions("clips_shards") == ["00000", "00001", "00002"]
        downloaded = dg.materialize(
            assets, selection=[download], tags=batch, instance=instance, raise_on_error=False
        )
        # Another run writing shard 00000 now, and what a killed attempt at 00001 left.
        planted = (f".00000.tar.tmp-{WRITING}", f".00001_stats.json.tmp-{KILLED}", f".00001.tar.tmp-{KILLED}")
        for temporary in planted:
            s3.fs.pipe_file(f"{s3.name}/clips/downsample/{temporary}", b"partial")
        reprocessed = dg.materialize(assets, selection=[downsample], partition_key="00001", instance=instance)
    assert reprocessed.success
    assert not downloaded.success  # shard 00002's blocking success_rate check failed (below)
    assert s3.names("clips/_shard_inputs") == ["00000.arrow", "00001.arrow", "00002.arrow", "manifest.json"]
    assert sorted(s3.stats("clips/download")) == ["00000", "00001", "00002"]
    materializations = [
        event.event_specific_data.materialization
        for event in downloaded.all_events
        if event.event_type_value == "ASSET_MATERIALIZATION"
    ]
    paths = {m.partition: m.metadata["output_path"].value for m in materializations}
    assert paths == {key: s3.url(f"clips/download/{key}.tar") for key in ("00000", "00001", "00002")}
    failed_checks = [
        (event.event_specific_data.partition, event.event_specific_data.check_name)
        for result in (downloaded, reprocessed)
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed
    ]
    assert failed_checks == [("00002", "success_rate")]  # its one row is a 404
    assert s3.names("clips/downsample") == [
        f".00000.tar.tmp-{WRITING}",
        "00001.parquet",
        "00001.tar",
        "00001_stats.json",
    ]
    assert s3.tar_names("clips/downsample/00001.tar") == s3.tar_names("clips/download/00001.tar")
