"""Writers: every format read back with its own ecosystem reader, atomic commit, any fsspec filesystem."""

from __future__ import annotations

import gc
import json
import tarfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from tfrecord.reader import tfrecord_loader

from v2d_core.errors import ConfigError
from v2d_core.sample import Sample, Status
from v2d_core.writers import ShardTarget, make_writer
from v2d_core.writers.status import ParquetRows

FORMATS = ["files", "webdataset", "parquet", "tfrecord", "dummy"]
SHARD = "00042"
ENCODE_FORMATS = {"video": "mp4", "audio": "m4a"}
INPUT_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("caption", pa.string()),
        ("clips", pa.list_(pa.list_(pa.float64()))),
        ("score", pa.float64()),
    ]
)
STATUS_COLUMNS = [
    *("url", "caption", "clips", "score"),
    *("key", "status", "error_message", "metadata", "error_transient"),
]
METADATA_JSON = {  # each sample's metadata as json must read back
    "00042000": {"frames": [0, 1, 2], "source": "x/y", "fps": 25.0},
    "00042003": {"probe": {"codec": "h264"}},
}
DATA_FILES = {
    "files": [SHARD],
    "webdataset": [f"{SHARD}.tar"],
    "parquet": [],
    "tfrecord": [f"{SHARD}.tfrecord"],
    "dummy": [],
}


def make_target(folder: str, *, save_caption: bool = True) -> ShardTarget:
    return ShardTarget(
        output_folder=folder,
        shard_name=SHARD,
        encode_formats=ENCODE_FORMATS,
        save_caption=save_caption,
        input_schema=INPUT_SCHEMA,
    )


def make_samples(media_dir: Path) -> list[Sample]:
    """Three successes (one without caption, one with numpy/path metadata) and two failures, interleaved."""
    return [
        Sample(
            key="00042000",
            url="http://host/0.mp4",
            caption="a cat",
            extra={"clips": [[0.0, 0.5]], "score": 0.5},
            streams={"video": media_dir / "video_0000.mp4", "audio": media_dir / "video_0001.mp4"},
            metadata={"frames": np.arange(3), "source": Path("x/y"), "fps": np.float32(25)},
        ),
        Sample(
            key="00042001",
            url="http://host/1.mp4",
            caption="missing",
            extra={"clips": None, "score": 1.0},
            status=Status.FAILED_TO_DOWNLOAD,
            error_message="HTTP 404",
        ),
        Sample(
            key="00042002",
            url="http://host/2.mp4",
            extra={"clips": None, "score": None},
            streams={"video": media_dir / "silent.mp4", "audio": media_dir / "video_0002.mp4"},
        ),
        Sample(
            key="00042003",
            url="http://host/3.mp4",
            caption="broken",
            extra={"clips": [[1.0, 2.0]], "score": 2.0},
            metadata={"probe": {"codec": "h264"}},
            status=Status.FAILED_TO_SUBSAMPLE,
            error_message="ffmpeg exited 1",
        ),
        Sample(
            key="00042004",
            url="http://host/4.mp4",
            caption="dog é",
            extra={"clips": [], "score": 3.0},
            streams={"video": media_dir / "video_0003.mp4", "audio": media_dir / "video_0003.mp4"},
        ),
    ]


def expected_data(samples: list[Sample], *, save_caption: bool = True) -> dict[str, dict[str, Any]]:
    """What each successful sample's members must hold: stream bytes, caption text, json record."""
    data = {}
    for sample in samples:
        if sample.status is not Status.SUCCESS:
            continue
        members: dict[str, Any] = {
            "mp4": sample.streams["video"].read_bytes(),
            "m4a": sample.streams["audio"].read_bytes(),
        }
        if save_caption:
            members["txt"] = sample.caption or ""
        members["json"] = {
            "url": sample.url,
            "key": sample.key,
            **({"caption": sample.caption} if sample.caption is not None else {}),
            **sample.extra,
            "status": "success",
            "error_message": None,
            **METADATA_JSON.get(sample.key, {}),
        }
        data[sample.key] = members
    return data


def write_shard(output_format: str, target: ShardTarget, samples: list[Sample]) -> None:
    with make_writer(output_format, target) as writer:
        for sample in samples:
            writer.write(sample)


def decode(members: dict[str, bytes]) -> dict[str, Any]:
    """Raw member bytes by extension -> the shape of :func:`expected_data`."""
    decoded: dict[str, Any] = dict(members)
    if "txt" in members:
        decoded["txt"] = members["txt"].decode()
    decoded["json"] = json.loads(members["json"])
    return decoded


def read_files(folder: Path, save_caption: bool) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, bytes]] = {}
    for path in sorted((folder / SHARD).iterdir()):
        key, ext = path.name.split(".", 1)
        data.setdefault(key, {})[ext] = path.read_bytes()
    return {key: decode(members) for key, members in data.items()}


def read_webdataset(folder: Path, save_caption: bool) -> dict[str, dict[str, Any]]:
    # webdataset never closes the local tar it opens; keep its ResourceWarning out of the test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        dataset = wds.WebDataset(str(folder / f"{SHARD}.tar"), shardshuffle=False, empty_check=False)
        samples = list(dataset)
        del dataset
        gc.collect()
    data = {}
    for sample in samples:
        key = sample.pop("__key__")
        data[key] = decode({ext: value for ext, value in sample.items() if not ext.startswith("__")})
    return data


def read_tfrecord(folder: Path, save_caption: bool) -> dict[str, dict[str, Any]]:
    exts = ["key", "mp4", "m4a", *(["txt"] if save_caption else []), "json"]
    path = str(folder / f"{SHARD}.tfrecord")
    data = {}
    for example in tfrecord_loader(path, None, dict.fromkeys(exts, "byte")):
        members = {ext: bytes(example[ext]) for ext in exts if ext in example}
        key = members.pop("key").decode()
        data[key] = decode(members)
    return data


def read_parquet(folder: Path, save_caption: bool) -> dict[str, dict[str, Any]]:
    exts = ["mp4", "m4a", *(["txt"] if save_caption else [])]
    data = {}
    for row in pq.read_table(folder / f"{SHARD}.parquet").to_pylist():
        members = {ext: row[ext] for ext in exts}
        if row["status"] == "success":
            data[row["key"]] = members
        else:
            assert set(members.values()) == {None}
    return data


READERS = {
    "files": read_files,
    "webdataset": read_webdataset,
    "tfrecord": read_tfrecord,
    "parquet": read_parquet,
    "dummy": lambda folder, save_caption: {},
}


def check_status_parquet(path: Path, columns: list[str], samples: list[Sample]) -> None:
    table = pq.read_table(path)
    assert table.column_names == columns
    assert table.schema.field("clips").type == INPUT_SCHEMA.field("clips").type
    rows = table.select(STATUS_COLUMNS).to_pylist()
    assert len(rows) == len(samples)
    assert [row["key"] for row in rows] == [sample.key for sample in samples]
    assert [row["status"] for row in rows] == [str(sample.status) for sample in samples]
    assert [row["error_message"] for row in rows] == [sample.error_message for sample in samples]
    assert [row["caption"] for row in rows] == [sample.caption for sample in samples]
    assert [row["clips"] for row in rows] == [sample.extra["clips"] for sample in samples]
    assert [row["score"] for row in rows] == [sample.extra["score"] for sample in samples]
    assert [row["url"] for row in rows] == [sample.url for sample in samples]
    assert [json.loads(row["metadata"]) for row in rows] == [
        METADATA_JSON.get(sample.key, {}) for sample in samples
    ]


def check_shard(folder: Path, output_format: str, samples: list[Sample], save_caption: bool = True) -> None:
    """The folder holds exactly the shard's final names, and each reads back as written."""
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        [*DATA_FILES[output_format], f"{SHARD}.parquet"]
    )
    expected = expected_data(samples, save_caption=save_caption)
    columns = list(STATUS_COLUMNS)
    if output_format == "parquet":
        columns += ["txt", "mp4", "m4a"] if save_caption else ["mp4", "m4a"]
        expected = {key: {ext: v for ext, v in m.items() if ext != "json"} for key, m in expected.items()}
    check_status_parquet(folder / f"{SHARD}.parquet", columns, samples)
    assert READERS[output_format](folder, save_caption) == ({} if output_format == "dummy" else expected)


@pytest.mark.parametrize("output_format", FORMATS)
def test_writes_shard_readable_by_ecosystem_reader(
    output_format: str, media_dir: Path, tmp_path: Path
) -> None:
    samples = make_samples(media_dir)
    write_shard(output_format, make_target(str(tmp_path)), samples)
    check_shard(tmp_path, output_format, samples)


@pytest.mark.parametrize("output_format", ["files", "webdataset", "tfrecord", "parquet"])
def test_without_captions_no_txt(output_format: str, media_dir: Path, tmp_path: Path) -> None:
    samples = make_samples(media_dir)
    write_shard(output_format, make_target(str(tmp_path), save_caption=False), samples)
    check_shard(tmp_path, output_format, samples, save_caption=False)


def test_files_member_names(media_dir: Path, tmp_path: Path) -> None:
    write_shard("files", make_target(str(tmp_path)), make_samples(media_dir))
    names = sorted(path.name for path in (tmp_path / SHARD).iterdir())
    assert names == [
        f"{key}.{ext}"
        for key in ("00042000", "00042002", "00042004")
        for ext in ("json", "m4a", "mp4", "txt")
    ]


def test_tar_members_in_sample_order(media_dir: Path, tmp_path: Path) -> None:
    write_shard("webdataset", make_target(str(tmp_path)), make_samples(media_dir))
    with tarfile.open(tmp_path / f"{SHARD}.tar") as tar:
        names = tar.getnames()
        assert all(member.isfile() for member in tar.getmembers())
    assert names == [
        f"{key}.{ext}"
        for key in ("00042000", "00042002", "00042004")
        for ext in ("mp4", "m4a", "txt", "json")
    ]


@pytest.mark.parametrize("output_format", FORMATS)
def test_empty_shard_is_complete(output_format: str, tmp_path: Path) -> None:
    write_shard(output_format, make_target(str(tmp_path)), [])
    assert pq.read_table(tmp_path / f"{SHARD}.parquet").num_rows == 0
    assert READERS[output_format](tmp_path, True) == {}


@pytest.mark.parametrize("output_format", FORMATS)
def test_exception_leaves_no_final_name_and_no_temporary(
    output_format: str, media_dir: Path, tmp_path: Path
) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        make_writer(output_format, make_target(str(tmp_path))) as writer,
    ):
        for sample in make_samples(media_dir):
            writer.write(sample)
        assert all(path.name.startswith(f".{SHARD}.") for path in tmp_path.iterdir())
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output_format", FORMATS)
def test_overwrite_replaces_previous_shard(output_format: str, media_dir: Path, tmp_path: Path) -> None:
    samples = make_samples(media_dir)
    write_shard(output_format, make_target(str(tmp_path)), samples)
    write_shard(output_format, make_target(str(tmp_path)), samples[2:])
    check_shard(tmp_path, output_format, samples[2:])


@pytest.mark.parametrize("output_format", FORMATS)
def test_memory_filesystem(output_format: str, media_dir: Path, tmp_path: Path) -> None:
    url = f"memory://v2d-{uuid.uuid4().hex}/out"
    fs, root = fsspec.core.url_to_fs(url)
    samples = make_samples(media_dir)
    write_shard(output_format, make_target(url), samples)
    fs.get(f"{root}/", str(tmp_path), recursive=True)
    check_shard(tmp_path, output_format, samples)
    fs.rm(root, recursive=True)


@pytest.mark.parametrize("output_format", FORMATS)
def test_memory_filesystem_abort(output_format: str, media_dir: Path) -> None:
    url = f"memory://v2d-{uuid.uuid4().hex}/out"
    fs, root = fsspec.core.url_to_fs(url)
    with pytest.raises(RuntimeError, match="boom"), make_writer(output_format, make_target(url)) as writer:
        writer.write(make_samples(media_dir)[0])
        raise RuntimeError("boom")
    assert fs.ls(root) == []


def test_unknown_format_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="files, webdataset, parquet, tfrecord, dummy"):
        make_writer("csv", make_target(str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_parquet_rows_are_written_in_bounded_row_groups(tmp_path: Path) -> None:
    schema = pa.schema([("key", pa.string()), ("mp4", pa.binary())])
    with (tmp_path / "rows.parquet").open("wb") as file:
        rows = ParquetRows(file, schema, max_rows=3, max_bytes=25)
        for index, size in enumerate([30, 1, 1, 1, 1]):
            rows.append({"key": str(index), "mp4": b"x" * size})
        rows.close()
    parquet = pq.ParquetFile(tmp_path / "rows.parquet")
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [1, 3, 1]
    assert parquet.read().column("key").to_pylist() == ["0", "1", "2", "3", "4"]
