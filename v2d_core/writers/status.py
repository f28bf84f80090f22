"""What every writer shares: the status parquet, a sample's members, and atomic commit over fsspec.

Every writer is a :class:`StatusWriter`: each sample becomes one row of ``{shard}.parquet``;
successful samples also go to the format's data files. Everything is written under hidden
temporary names in the output folder; ``commit`` renames the data files, the parquet and
the stats into place as one unit (:mod:`v2d_core.shards.commit`; the names are
:class:`~v2d_core.shards.ShardLayout`'s), ``abort`` deletes the temporaries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from v2d_core.arrow_arrays import typed_array
from v2d_core.errors import InputError
from v2d_core.redact import redact_url
from v2d_core.sample import STATUS_COLUMNS, Sample, Status
from v2d_core.shards import ShardLayout, ShardStats
from v2d_core.shards.commit import TempOutputs
from v2d_core.writers.base import ShardTarget, ShardWriter

STATUS_TYPES = (pa.string(), pa.string(), pa.string(), pa.string(), pa.bool_())
STATUS_FIELDS = tuple(pa.field(name, kind) for name, kind in zip(STATUS_COLUMNS, STATUS_TYPES, strict=True))


def _json_safe(value: Any) -> Any:
    """``json.dumps`` fallback: numpy arrays and scalars, paths, then anything as its string."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def to_json(value: Any) -> str:
    """``value`` as json, with numpy values and paths made json-safe."""
    return json.dumps(value, default=_json_safe)


def status_schema(input_schema: pa.Schema) -> pa.Schema:
    """The status parquet's schema: the input columns, then key, status, error_message, metadata,
    error_transient (null for a success; true when ``retry_failed`` would fetch the row again)."""
    return pa.schema([*input_schema, *STATUS_FIELDS])


def status_row(sample: Sample, input_schema: pa.Schema) -> dict[str, Any]:
    """One sample's status parquet row, with the input columns taken from the sample (credentials
    in the url masked)."""
    known = {"url": redact_url(sample.url), "caption": sample.caption}
    row = {name: known[name] if name in known else sample.extra.get(name) for name in input_schema.names}
    row["key"] = sample.key
    row["status"] = str(sample.status)
    row["error_message"] = sample.error_message
    row["metadata"] = to_json(sample.metadata)
    row["error_transient"] = None if sample.status is Status.SUCCESS else sample.error_transient
    return row


def media(sample: Sample, encode_formats: dict[str, str]) -> dict[str, Path | bytes]:
    """The sample's streams by output extension: files (``{"mp4": Path(...)}``) or media held
    in memory.

    Streams whose modality ``encode_formats`` does not name are not kept (a subset run
    with ``encode_formats: {}`` keeps only json and txt).
    """
    parts: dict[str, Path | bytes] = {
        encode_formats[modality]: Path(path)
        for modality, path in sample.streams.items()
        if modality in encode_formats
    }
    held = sample.held.items()
    parts.update((encode_formats[modality], body) for modality, body in held if modality in encode_formats)
    return parts


def members(sample: Sample, target: ShardTarget) -> dict[str, Path | bytes]:
    """A successful sample's parts by extension, in output order: streams, ``txt``, ``json``."""
    parts = media(sample, target.encode_formats)
    if target.save_caption:
        parts["txt"] = (sample.caption or "").encode()
    parts["json"] = to_json(sample.record()).encode()
    return parts


class ParquetRows:
    """Rows appended to a parquet file, written in row groups of bounded rows and bytes."""

    def __init__(
        self, file: BinaryIO, schema: pa.Schema, max_rows: int = 1000, max_bytes: int = 64 << 20
    ) -> None:
        self._file = file
        self.schema = schema
        self._writer = pq.ParquetWriter(file, schema)
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._rows: list[dict[str, Any]] = []
        self._bytes = 0

    def append(self, row: dict[str, Any]) -> None:
        """Buffer one row; write a row group once the buffer is full."""
        self._rows.append(row)
        # Text counts too: a row of long captions must not hold a thousand of them in memory.
        self._bytes += sum(len(value) for value in row.values() if isinstance(value, bytes | str))
        if len(self._rows) >= self._max_rows or self._bytes >= self._max_bytes:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            schema = self._writer.schema
            columns = [typed_array([row.get(f.name) for row in self._rows], f.type) for f in schema]
            self._writer.write_table(pa.Table.from_arrays(columns, schema=schema))
        self._rows.clear()
        self._bytes = 0

    def close(self, *, discard: bool = False) -> None:
        """Write the buffered rows (unless ``discard``) and the footer, and close the file."""
        if discard:
            self._rows.clear()
        try:
            self._flush()
        finally:
            self._writer.close()
            self._file.close()


class StatusWriter(ShardWriter):
    """Writes every sample as a row of ``{shard}.parquet``; subclasses add the successful samples' media.

    Hooks, all optional: ``_open`` creates the data temporaries, ``_add`` writes one successful
    sample's parts, ``_close`` finishes the data files; ``_schema`` / ``_row`` extend the parquet.
    """

    output_format: ClassVar[str]

    def __init__(self, target: ShardTarget) -> None:
        super().__init__(target)
        self.layout = ShardLayout(target.output_folder, target.shard_name, self.output_format)
        self.outputs = TempOutputs(target.output_folder, target.shard_name, target.storage_options)
        self._stats: ShardStats | None = None
        try:
            self._open()
            self._rows = ParquetRows(self.outputs.open(self.layout.parquet_name), self._schema())
        except BaseException:
            self.outputs.abort()
            raise

    @property
    def data_name(self) -> str:
        """The name of the format's data file (or folder), for writers that write one."""
        name = self.layout.data_name
        if name is None:
            raise TypeError(f"output_format {self.output_format!r} writes no data file")
        return name

    def write(self, sample: Sample) -> None:
        if sample.status is Status.SUCCESS:
            self._add(sample.key, members(sample, self.target))
        self._rows.append(self._row(sample))

    def keep(self, row: Mapping[str, Any], parts: Mapping[str, Path]) -> None:
        if list(row) != self._rows.schema.names:
            raise InputError(
                f"sample {row.get('key')} was written with columns {list(row)}, these settings write "
                f"{self._rows.schema.names}: keep the settings a shard was written with"
            )
        if parts:
            self._add(str(row["key"]), parts)
        self._rows.append(dict(row))

    def add_stats(self, stats: ShardStats) -> None:
        self._stats = stats
        with self.outputs.fs.open(self.outputs.temp(self.layout.stats_name), "w") as handle:
            json.dump(stats.to_json(), handle, indent=4)

    def commit(self) -> None:
        try:
            self._close()
            self._rows.close()
            self.outputs.commit(self._stats, self.target.gate)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        try:
            self._close()
            self._rows.close(discard=True)
        finally:
            self.outputs.abort()

    def _open(self) -> None:
        """Create the data temporaries (none by default)."""

    def _add(self, key: str, parts: Mapping[str, Path | bytes]) -> None:
        """Write one successful sample's data, its parts by extension (nothing by default)."""

    def _close(self) -> None:
        """Finish the data files; called once or more (commit, then abort on failure)."""

    def _schema(self) -> pa.Schema:
        return status_schema(self.target.input_schema)

    def _row(self, sample: Sample) -> dict[str, Any]:
        return status_row(sample, self.target.input_schema)
