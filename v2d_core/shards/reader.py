"""Reading a written shard back: its stats, status rows, sample keys and data files by key.

The one place that opens a shard's files after it is written (retries, checks, the stage
that re-reads a tar, ``v2d-verify``), over any fsspec filesystem. Tar members are named
by webdataset's rule (:func:`split_member_name`); a TFRecord is read record by record,
each a ``tf.train.Example`` whose ``key`` feature names its sample.
"""

from __future__ import annotations

import json
import struct
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
from tfrecord import example_pb2

from v2d_core.shards.layout import ShardLayout
from v2d_core.shards.stats import ShardStats
from v2d_core.shards.tar_source import open_tar
from v2d_core.storage import fresh_fs

TRANSIENT_COLUMN = "error_transient"  # the status parquet's last status column; media columns follow
Parts = dict[str, Path]


class ShardReader:
    """The files of one written shard, read through fsspec (and so its storage config)."""

    def __init__(self, layout: ShardLayout) -> None:
        self.layout = layout

    def stats(self) -> ShardStats:
        fs, path = fresh_fs(self.layout.stats_path)
        with fs.open(path, "r") as handle:
            return ShardStats.from_json(json.load(handle), self.layout.stats_path)

    def status(self, columns: list[str] | None = None) -> pa.Table:
        """The status parquet's input and status columns (or those of ``columns`` it has), without
        the parquet format's media columns."""
        with self._parquet() as parquet:
            names = parquet.schema_arrow.names
            if TRANSIENT_COLUMN in names:
                names = names[: names.index(TRANSIENT_COLUMN) + 1]
            return parquet.read(columns=[name for name in names if columns is None or name in columns])

    def media_columns(self) -> list[str]:
        """The parquet's columns after the status ones: the parquet format's ``txt`` and media."""
        with self._parquet() as parquet:
            names = parquet.schema_arrow.names
        return names[names.index(TRANSIENT_COLUMN) + 1 :] if TRANSIENT_COLUMN in names else []

    def rows(self, batch_size: int = 16) -> Iterator[dict[str, Any]]:
        """Every parquet row with every column (the parquet format's media too), a few at a time."""
        with self._parquet() as parquet:
            for batch in parquet.iter_batches(batch_size=batch_size):
                yield from batch.to_pylist()

    def data_keys(self) -> dict[str, set[str]] | None:
        """Sample key -> the extensions the shard's data holds for it (tar members, files, TFRecord
        features; for the parquet format, its successful rows and data columns); None if the
        format writes no data."""
        layout = self.layout
        if layout.data_path is None:
            return None
        if layout.output_format == "parquet":
            media = self.media_columns()
            table = self.status(["key", "status"])
            return {
                key: {"json", *media}
                for key, status in zip(table["key"].to_pylist(), table["status"].to_pylist(), strict=True)
                if status == "success"
            }
        fs, path = fresh_fs(layout.data_path)
        if layout.output_format == "files":  # a folder of no files is absent on object storage
            names = fs.ls(path, detail=False) if fs.exists(path) else []
            return _by_key(split_member_name(name.rsplit("/", 1)[-1]) for name in names)
        with fs.open(path, "rb") as handle:
            if layout.output_format == "tfrecord":
                return {key: extensions for key, extensions in tfrecord_features(handle)}
            with tarfile.open(fileobj=handle, mode="r|*") as tar:
                return _by_key((key, ext) for key, ext, _ in tar_members(tar))

    def parts(self, folder: Path) -> Iterator[tuple[str, Parts]]:
        """Each sample of the shard's tar or folder with its files copied under ``folder``, by extension."""
        layout = self.layout
        if layout.output_format not in ("webdataset", "files") or layout.data_path is None:
            raise ValueError(f"output_format {layout.output_format!r} keeps no sample files")
        folder.mkdir(parents=True, exist_ok=True)
        if layout.output_format == "webdataset":
            yield from _tar_parts(layout.data_path, folder)
        else:
            yield from _folder_parts(layout.data_path, folder)

    @contextmanager
    def _parquet(self) -> Iterator[pq.ParquetFile]:
        fs, path = fresh_fs(self.layout.parquet_path)
        with fs.open(path, "rb") as handle:
            yield pq.ParquetFile(handle)


def split_member_name(name: str) -> tuple[str, str]:
    """webdataset's rule: a member's key is its path up to the first dot of its basename, the rest
    its extension."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def tar_members(tar: tarfile.TarFile) -> Iterator[tuple[str, str, tarfile.TarInfo]]:
    """Each member of ``tar`` but folders, in tar order, with its key and extension."""
    for member in tar:
        if not member.isdir():
            yield (*split_member_name(member.name), member)


def tar_keys(tar_url: str) -> list[str]:
    """The sample keys of a tar, in order, each once."""
    with open_tar(tar_url) as source:
        return list(dict.fromkeys(key for key, _, _ in tar_members(source.tar)))


def tfrecord_features(handle: IO[bytes]) -> Iterator[tuple[str, set[str]]]:
    """Each record's ``key`` and its other feature names; ValueError on a truncated record.

    A record is its length (u64), a crc (u32), the data, a crc (u32).
    """
    while header := handle.read(12):
        if len(header) < 12:
            raise ValueError("truncated TFRecord header")
        (length,) = struct.unpack("<Q", header[:8])
        body = handle.read(length + 4)
        if len(body) < length + 4:
            raise ValueError("truncated TFRecord record")
        features = example_pb2.Example.FromString(body[:length]).features.feature
        key = b"".join(features["key"].bytes_list.value).decode() if "key" in features else ""
        yield key, set(features) - {"key"}


def _by_key(names: Iterator[tuple[str, str]]) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for key, extension in names:
        keys.setdefault(key, set()).add(extension)
    return keys


def _tar_parts(tar_url: str, folder: Path) -> Iterator[tuple[str, Parts]]:
    with open_tar(tar_url) as source:
        current, parts = None, {}
        for index, (key, ext, member) in enumerate(tar_members(source.tar)):
            if key != current and current is not None:
                yield current, parts
                parts = {}
            current = key
            if not member.isfile():
                continue
            parts[ext] = folder / str(index)
            with parts[ext].open("wb") as sink:
                source.copy(member, sink)
        if current is not None:
            yield current, parts


def _folder_parts(folder_url: str, folder: Path) -> Iterator[tuple[str, Parts]]:
    fs, path = fresh_fs(folder_url)
    by_key: dict[str, list[tuple[str, str]]] = {}
    for file in sorted(fs.ls(path, detail=False)):
        key, ext = split_member_name(file.rsplit("/", 1)[-1])
        by_key.setdefault(key, []).append((ext, file))
    for key, files in by_key.items():
        parts = {}
        for index, (ext, file) in enumerate(files):
            parts[ext] = local = folder / f"{key}-{index}"
            fs.get_file(file, str(local))
        yield key, parts
