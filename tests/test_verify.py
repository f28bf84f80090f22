"""``v2d-verify``: real shards of every output format pass; each kind of damage is named, exit 1."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.helpers import write_csv
from tests.object_store import new_bucket, s3_server
from v2d_core import video2dataset
from v2d_core.testing.server import MediaServer

FORMATS = ("webdataset", "files", "parquet", "tfrecord", "dummy")
DISAGREE = "00000 readable: data and parquet disagree"
CLIPPED_KEYS = ("000000_00000", "000000_00001", "000001_00000")  # shard 00000: rows 0 (two clips) and 1


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2d_core.shards.command", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory, media_server: MediaServer) -> dict[str, Path]:
    """One dataset per output format: two clipped videos in shard 00000, a 404 alone in 00001."""
    folder = tmp_path_factory.mktemp("verify")
    rows = [
        {
            "url": media_server.url("files", "video_0000.mp4"),
            "caption": "a",
            "clips": "[[0.0, 0.4], [0.5, 0.9]]",
        },
        {"url": media_server.url("files", "video_0001.mp4"), "caption": "b", "clips": "[[0.1, 0.6]]"},
        {"url": media_server.url("status/404", "x.mp4"), "caption": "c", "clips": "[[0.1, 0.6]]"},
    ]
    url_list = write_csv(folder / "in.csv", rows)
    outputs = {}
    for output_format in FORMATS:
        outputs[output_format] = folder / output_format
        video2dataset(
            url_list=str(url_list),
            input_format="csv",
            caption_col="caption",
            clip_col="clips",
            output_folder=str(outputs[output_format]),
            output_format=output_format,
            number_sample_per_shard=2,
            processes_count=1,
            thread_count=2,
            show_progress=False,
            config={"subsampling": {"ClippingSubsampler": {"args": {"min_length": 0.0}}}},
        )
    return outputs


def damaged(datasets: dict[str, Path], output_format: str, tmp_path: Path) -> Path:
    copy = tmp_path / output_format
    shutil.copytree(datasets[output_format], copy)
    return copy


@pytest.mark.parametrize("output_format", FORMATS)
def test_every_output_format_verifies(datasets: dict[str, Path], output_format: str) -> None:
    done = run_verify(str(datasets[output_format]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"2 shard(s) ({output_format}), 4 rows: every check passed" in done.stdout


def drop_tar_member(folder: Path) -> None:
    with tarfile.open(folder / "00000.tar") as tar:
        members = [(member, tar.extractfile(member).read()) for member in tar]  # type: ignore[union-attr]
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for member, data in members:
            if member.name != "000000_00001.mp4":
                tar.addfile(member, io.BytesIO(data))


def add_stray_file(folder: Path) -> None:
    (folder / "00000" / "000009.json").write_text("{}")


def truncate_tfrecord(folder: Path) -> None:
    path = folder / "00000.tfrecord"
    path.write_bytes(path.read_bytes()[:-100])


def inflate_stats(folder: Path) -> None:
    path = folder / "00001_stats.json"
    stats = json.loads(path.read_text())
    path.write_text(json.dumps(stats | {"successes": 1, "failed_to_download": 0}))


def uncommit(folder: Path) -> None:
    (folder / "00001_stats.json").unlink()


def repeat_a_row(folder: Path) -> None:
    table = pq.read_table(folder / "00000.parquet")
    first_clip = table.filter(pc.equal(table["key"], CLIPPED_KEYS[0]))
    pq.write_table(pa.concat_tables([table, first_clip]), folder / "00000.parquet")


def copy_shard_as_another(folder: Path) -> None:
    for name in ("00000.parquet", "00000_stats.json"):
        shutil.copy(folder / name, folder / name.replace("00000", "00002"))


@pytest.mark.parametrize(
    ("output_format", "damage", "reported"),
    [
        (
            "webdataset",
            drop_tar_member,
            "00000 readable: data and parquet disagree (incomplete_or_missing: 000000_00001)",
        ),
        ("files", add_stray_file, "00000 readable: data and parquet disagree (not_in_parquet: 000009)"),
        (
            "parquet",
            inflate_stats,
            "00001 stats_match_parquet: stats disagree: success 1 in stats, 0 in parquet",
        ),
        ("webdataset", uncommit, "00001 committed: no 00001_stats.json: never committed"),
        ("dummy", repeat_a_row, "00000 unique_keys: 1 duplicated key(s) (duplicates: 000000_00000)"),
        ("dummy", copy_shard_as_another, "3 key(s) in more than one shard: " + ", ".join(CLIPPED_KEYS)),
    ],
)
def test_damage_is_named_and_fails(
    datasets: dict[str, Path],
    tmp_path: Path,
    output_format: str,
    damage: Callable[[Path], None],
    reported: str,
) -> None:
    folder = damaged(datasets, output_format, tmp_path)
    damage(folder)
    done = run_verify(str(folder))
    assert done.returncode == 1, done.stdout + done.stderr
    assert reported in done.stdout
    assert "fail a check" in done.stdout or "more than one shard" in done.stdout


def test_truncated_tfrecord_is_unreadable_not_a_crash(datasets: dict[str, Path], tmp_path: Path) -> None:
    folder = damaged(datasets, "tfrecord", tmp_path)
    truncate_tfrecord(folder)
    done = run_verify(str(folder))
    assert "00000 readable: " in done.stdout and "unreadable: truncated TFRecord" in done.stdout
    assert "Traceback" not in done.stderr


def test_a_folder_without_shards_fails_and_a_missing_one_is_an_error(tmp_path: Path) -> None:
    empty = run_verify(str(tmp_path))
    assert empty.returncode == 1 and f"{tmp_path}: no shard found" in empty.stdout
    missing = run_verify(str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_the_format_can_be_named(datasets: dict[str, Path]) -> None:
    done = run_verify(str(datasets["parquet"]), "--output_format", "parquet")
    assert done.returncode == 0 and "(parquet)" in done.stdout


def test_a_dataset_on_s3_verifies_and_a_lost_object_fails(
    media_server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with s3_server() as endpoint, new_bucket(endpoint, monkeypatch) as bucket:
        rows = [
            {"url": media_server.url("files", f"video_000{i}.mp4"), "caption": f"cap {i}"} for i in range(3)
        ]
        bucket.fs.pipe_file(f"{bucket.name}/in.txt", "\n".join(row["url"] for row in rows).encode())
        video2dataset(
            url_list=bucket.url("in.txt"),
            input_format="txt",
            output_folder=bucket.url("dataset"),
            output_format="files",
            number_sample_per_shard=2,
            processes_count=1,
            thread_count=2,
            show_progress=False,
        )
        done = run_verify(bucket.url("dataset"))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 shard(s) (files), 3 rows: every check passed" in done.stdout
        bucket.fs.rm(f"{bucket.name}/dataset/00001/000010.mp4")
        done = run_verify(bucket.url("dataset"))
        assert done.returncode == 1
        assert f"{DISAGREE.replace('00000', '00001')} (incomplete_or_missing: 000010)" in done.stdout
