"""``incremental_mode="retry_failed"``: fetch again the rows of finished shards that failed transiently.

A finished shard (its ``_stats.json`` exists) is retried when its parquet has rows with
``error_transient`` true: a timeout, a 5xx or 429, a connection lost
(:func:`v2d_core.errors.is_transient`); a 404 or a file that is not media is final. The
shard's new version keeps every other row as it was, under the same key: its parquet row
and its data files (tar members, files) byte for byte. The retried rows follow with their
new outcome, and the stats are updated. The new version is committed like any shard
(:mod:`v2d_core.writers.commit`): a run killed during the rewrite leaves the old shard or
the new one. Shards not finished yet are processed as usual.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from v2d_core.fetch.webdataset import COPY_BLOCK
from v2d_core.job import JobConfig
from v2d_core.sample import Sample, Status
from v2d_core.shard import SampleCallback, ShardResult, SourceItem, fetch_samples, process_shard, write_shard
from v2d_core.sharding import ShardSpec
from v2d_core.writers import ShardWriter
from v2d_core.writers.commit import recover

TRANSIENT_COLUMN = "error_transient"
Parts = dict[str, Path]


def process_or_retry(spec: ShardSpec, job: JobConfig, on_sample: SampleCallback | None = None) -> ShardResult:
    """``process_shard``; with ``incremental_mode="retry_failed"``, a finished shard is only retried.

    ``process_shard`` finishes what a killed commit left itself; a retry must do it before it
    asks whether the shard is finished.
    """
    name = job.shard_name(spec.shard_id)
    if job.incremental_mode == "retry_failed":
        recover(job.output_folder, [name])
        if _exists(job, f"{name}_stats.json"):
            return retry_shard(spec.shard_id, job, on_sample)
    return process_shard(spec, job, on_sample)


def transient_failures(job: JobConfig, shard_ids: Iterable[int]) -> dict[int, int]:
    """Shard id -> how many of its rows failed transiently, for those of ``shard_ids`` that have any."""
    counts = {}
    for shard_id in shard_ids:
        table = _read_status(job, shard_id, columns=[TRANSIENT_COLUMN])
        if TRANSIENT_COLUMN in table.column_names and (count := pc.sum(table[TRANSIENT_COLUMN]).as_py()):
            counts[shard_id] = count
    return counts


def retry_shard(shard_id: int, job: JobConfig, on_sample: SampleCallback | None = None) -> ShardResult:
    """Fetch again the rows of a finished shard that failed for a transient reason; rewrite the shard."""
    name = job.shard_name(shard_id)
    status = _read_status(job, shard_id)
    if TRANSIENT_COLUMN not in status.column_names:  # written before v2d recorded transient failures
        return _result_from_stats(shard_id, _read_stats(job, name), [])
    retried = status.filter(pc.fill_null(status.column(TRANSIENT_COLUMN), False))
    result = _result_from_stats(shard_id, _read_stats(job, name), retried.to_pylist())
    result.proxy = job.config.reading.yt_args.proxy_for_shard(shard_id)
    if retried.num_rows == 0:
        return result
    input_schema = pa.schema(list(status.schema)[: status.schema.get_field_index("key")])
    samples = [_sample(row, input_schema) for row in retried.to_pylist()]

    def source(tmp: str) -> tuple[pa.Schema, Iterator[SourceItem]]:
        return input_schema, fetch_samples(samples, job, tmp, shard_id)

    def keep(writer: ShardWriter, tmp: str) -> None:
        _keep_rows(job, name, status, writer, Path(tmp))

    return write_shard(result, job, source, on_sample, keep)


def _sample(row: dict[str, Any], input_schema: pa.Schema) -> Sample:
    extra = {field.name: row[field.name] for field in input_schema if field.name not in ("url", "caption")}
    return Sample(key=row["key"], url=row["url"], caption=row.get("caption"), extra=extra)


def _result_from_stats(shard_id: int, stats: dict[str, Any], retried: list[dict[str, Any]]) -> ShardResult:
    """The shard's stats as a result, without the rows about to be retried (they are counted again)."""
    result = ShardResult(
        shard_id=shard_id,
        count=stats["count"] - len(retried),
        successes=stats["successes"],
        failed_to_download=stats["failed_to_download"],
        failed_to_subsample=stats["failed_to_subsample"],
        bytes_downloaded=stats["bytes_downloaded"],
        start_time=stats["start_time"],
        end_time=stats["end_time"],
        status_dict=Counter(stats["status_dict"]),
        proxy_failures=Counter(stats.get("proxy_failures", {})),
    )
    for row in retried:
        if row["status"] == Status.FAILED_TO_DOWNLOAD:
            result.failed_to_download -= 1
        else:
            result.failed_to_subsample -= 1
        result.status_dict[row["error_message"] or row["status"]] -= 1
    result.status_dict = +result.status_dict  # drops reasons no row has any more
    return result


def _keep_rows(job: JobConfig, name: str, status: pa.Table, writer: ShardWriter, tmp: Path) -> None:
    """Copy every row that is not retried, with the data files of the successful ones."""
    kept = set()
    if job.output_format in ("webdataset", "files"):
        rows = {row["key"]: row for row in status.to_pylist()}
        for key, parts in _old_parts(job, name, tmp):
            row = rows.get(key)
            if row is not None and not row[TRANSIENT_COLUMN]:
                writer.keep(row, parts)
                kept.add(key)
            for part in parts.values():
                part.unlink()
    fs, path = fsspec.core.url_to_fs(_path(job, f"{name}.parquet"))
    with fs.open(path, "rb") as handle:  # all columns: the parquet format's media too
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=16):
            for row in batch.to_pylist():
                if not row[TRANSIENT_COLUMN] and row["key"] not in kept:
                    writer.keep(row, {})


def _old_parts(job: JobConfig, name: str, tmp: Path) -> Iterator[tuple[str, Parts]]:
    """Each sample of the shard's data (tar or folder) with its files copied under ``tmp``, by extension."""
    folder = tmp / "kept"
    folder.mkdir()
    if job.output_format == "webdataset":
        yield from _tar_parts(_path(job, f"{name}.tar"), folder)
    else:
        yield from _folder_parts(_path(job, name), folder)


def _tar_parts(tar_url: str, folder: Path) -> Iterator[tuple[str, Parts]]:
    fs, path = fsspec.core.url_to_fs(tar_url)
    with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        current, parts = None, {}
        for index, member in enumerate(tar):
            key, _, ext = member.name.partition(".")
            if key != current and current is not None:
                yield current, parts
                parts = {}
            current = key
            source = tar.extractfile(member)
            if source is None:
                continue
            parts[ext] = folder / str(index)
            with parts[ext].open("wb") as sink:
                shutil.copyfileobj(source, sink, COPY_BLOCK)
        if current is not None:
            yield current, parts


def _folder_parts(folder_url: str, folder: Path) -> Iterator[tuple[str, Parts]]:
    fs, path = fsspec.core.url_to_fs(folder_url)
    by_key: dict[str, list[str]] = {}
    for file in sorted(fs.ls(path, detail=False)):
        by_key.setdefault(file.rsplit("/", 1)[-1].partition(".")[0], []).append(file)
    for key, files in by_key.items():
        parts = {}
        for index, file in enumerate(files):
            parts[file.rsplit("/", 1)[-1].partition(".")[2]] = local = folder / str(index)
            fs.get_file(file, str(local))
        yield key, parts


def _path(job: JobConfig, name: str) -> str:
    return f"{job.output_folder.rstrip('/')}/{name}"


def _exists(job: JobConfig, name: str) -> bool:
    fs, path = fsspec.core.url_to_fs(_path(job, name))
    return bool(fs.exists(path))


def _read_status(job: JobConfig, shard_id: int, columns: list[str] | None = None) -> pa.Table:
    """A finished shard's status columns (the parquet format's media columns are not read)."""
    fs, path = fsspec.core.url_to_fs(_path(job, f"{job.shard_name(shard_id)}.parquet"))
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        if TRANSIENT_COLUMN in names:  # the last status column; media columns may follow
            names = names[: names.index(TRANSIENT_COLUMN) + 1]
        return parquet.read(columns=[name for name in names if columns is None or name in columns])


def _read_stats(job: JobConfig, name: str) -> dict[str, Any]:
    fs, path = fsspec.core.url_to_fs(_path(job, f"{name}_stats.json"))
    with fs.open(path, "r") as handle:
        return json.load(handle)
