"""``incremental_mode="retry_failed"``: fetch again the rows of finished shards that failed transiently.

A finished shard (its ``_stats.json`` exists) is retried when its parquet has rows with
``error_transient`` true: a timeout, a 5xx or 429, a connection lost
(:func:`v2d_core.errors.is_transient`); a 404 or a file that is not media is final. The
shard's new version keeps every other row as it was, under the same key: its parquet row
and its data files (tar members, files) byte for byte. The retried rows follow with their
new outcome, and the stats are updated. The new version is committed like any shard
(:mod:`v2d_core.shards.commit`): a run killed during the rewrite leaves the old shard or
the new one. Shards not finished yet are processed as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from v2d_core.inputs.sharding import ShardSpec, read_shard_input
from v2d_core.job import JobConfig
from v2d_core.sample import Sample, Status
from v2d_core.shards import ShardStats
from v2d_core.shards.process import (
    SampleCallback,
    ShardResult,
    SourceItem,
    fetch_samples,
    write_shard,
)
from v2d_core.shards.reader import TRANSIENT_COLUMN, ShardReader
from v2d_core.writers import ShardWriter


def transient_failures(job: JobConfig, shard_ids: Iterable[int]) -> dict[int, int]:
    """Shard id -> how many of its rows failed transiently, for those of ``shard_ids`` that have any."""
    counts = {}
    for shard_id in shard_ids:
        table = ShardReader(job.shard_layout(shard_id)).status(columns=[TRANSIENT_COLUMN])
        if TRANSIENT_COLUMN in table.column_names and (count := pc.sum(table[TRANSIENT_COLUMN]).as_py()):
            counts[shard_id] = count
    return counts


def retry_shard(spec: ShardSpec, job: JobConfig, on_sample: SampleCallback | None = None) -> ShardResult:
    """Fetch again the rows of a finished shard that failed for a transient reason; rewrite the shard.

    The parquet keeps urls with their credentials masked; the retried rows are fetched from the
    urls of the shard's input, which keeps them whole.
    """
    shard_id = spec.shard_id
    reader = ShardReader(job.shard_layout(shard_id))
    status = reader.status()
    if TRANSIENT_COLUMN not in status.column_names:  # written before v2d recorded transient failures
        return _result_from_stats(shard_id, reader.stats(), [])
    retried = status.filter(pc.fill_null(status.column(TRANSIENT_COLUMN), False))
    result = _result_from_stats(shard_id, reader.stats(), retried.to_pylist())
    result.proxy = job.config.reading.yt_args.proxy_for_shard(shard_id)
    if retried.num_rows == 0:
        return result
    input_schema = pa.schema(list(status.schema)[: status.schema.get_field_index("key")])
    urls = _input_urls(spec, job)
    samples = [_sample(row, input_schema, urls) for row in retried.to_pylist()]

    def source(tmp: str) -> tuple[pa.Schema, Iterator[SourceItem]]:
        return input_schema, fetch_samples(samples, job, tmp, shard_id)

    def keep(writer: ShardWriter, tmp: str) -> None:
        _keep_rows(job, reader, status, writer, Path(tmp))

    return write_shard(result, job, source, on_sample, keep)


def _sample(row: dict[str, Any], input_schema: pa.Schema, urls: dict[str, str | None]) -> Sample:
    extra = {field.name: row[field.name] for field in input_schema if field.name not in ("url", "caption")}
    url = urls.get(row["key"], row["url"])
    return Sample(key=row["key"], url=url, caption=row.get("caption"), extra=extra)


def _input_urls(spec: ShardSpec, job: JobConfig) -> dict[str, str | None]:
    """Sample key -> the url as the shard's input has it (credentials whole); empty for tar input."""
    if job.input_format == "webdataset":
        return {}
    urls = read_shard_input(spec).column("url").to_pylist()
    return {job.sample_key(spec.shard_id, index): url for index, url in enumerate(urls)}


def _result_from_stats(shard_id: int, stats: ShardStats, retried: list[dict[str, Any]]) -> ShardResult:
    """The shard's stats as a result, without the rows about to be retried (they are counted again)."""
    result = ShardResult.resume(shard_id, stats)
    result.count -= len(retried)
    for row in retried:
        if row["status"] == Status.FAILED_TO_DOWNLOAD:
            result.failed_to_download -= 1
        else:
            result.failed_to_subsample -= 1
        result.status_dict[row["error_message"] or row["status"]] -= 1
    result.status_dict = +result.status_dict  # drops reasons no row has any more
    return result


def _keep_rows(job: JobConfig, reader: ShardReader, status: pa.Table, writer: ShardWriter, tmp: Path) -> None:
    """Copy every row that is not retried, with the data files of the successful ones."""
    kept = set()
    if job.output_format in ("webdataset", "files"):
        rows = {row["key"]: row for row in status.to_pylist()}
        for key, parts in reader.parts(tmp / "kept"):
            row = rows.get(key)
            if row is not None and not row[TRANSIENT_COLUMN]:
                writer.keep(row, parts)
                kept.add(key)
            for part in parts.values():
                part.unlink()
    for row in reader.rows():  # all columns: the parquet format's media too
        if not row[TRANSIENT_COLUMN] and row["key"] not in kept:
            writer.keep(row, {})
