"""Shard specs: which input rows make up shard ``00042`` and where they are stored.

:func:`plan_shards` cuts the url list into shards of ``number_sample_per_shard``
rows; each input file starts a new shard, as in video2dataset. Shard ids depend
only on the input's row counts, never on which shards are already done. An input
webdataset is already sharded: each tar is a shard, named by its id.
"""

from __future__ import annotations

import hashlib
import math
import os
import posixpath
import uuid
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass

import braceexpand
import pyarrow as pa
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from v2d_core.arrow_arrays import typed_array
from v2d_core.errors import InputError
from v2d_core.inputs.url_lists import input_files, read_batches
from v2d_core.job import JobConfig
from v2d_core.storage import fresh_fs


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One unit of work: a shard id and the file holding its input rows.

    ``input_path`` is an Arrow IPC file (any fsspec url) whose columns are ``url``,
    then ``caption`` and ``clips`` when those columns were asked for, then the
    additional columns, in input order; row ``i`` becomes sample key
    ``JobConfig.sample_key(shard_id, i)``.
    """

    shard_id: int
    input_path: str
    row_count: int
    temporary_input: bool = False  # a run's own copy of the rows: deleted once the shard is committed
    input_digest: str | None = None  # of the rows, as plan_shards wrote them; None for an input tar


def plan_shards(job: JobConfig, shard_dir: str, skip: Container[int] = frozenset()) -> Iterator[ShardSpec]:
    """The spec of each shard of ``job`` not in ``skip``: the one planning path of every runner.

    An input webdataset's shards are its tars (:func:`tar_shards`). A url list's rows are
    cut into ``{shard_dir}/{shard_name}.arrow`` files, one per shard. Lazy: each shard is
    written as soon as its rows are read, so memory stays around one shard (plus one read
    batch). Skipped shards are read but not written, and ids still advance.
    ``job.config.reading.sampler``, when set, is given the ids not in ``skip`` (all files,
    ascending) and the shards it does not return are skipped too; it costs one extra pass
    over the input to count rows.
    """
    if job.input_format == "webdataset":
        yield from tar_shards(job.url_list, skip)
        return
    files = input_files(job.url_list, job.input_format)
    skip = _sampled_skip(job, files, skip)
    size = job.config.storage.number_sample_per_shard
    shard_id = 0
    for path in files:
        for table in _cut(read_batches(path, job), size):
            if shard_id not in skip:
                yield _write_shard(job, shard_dir, shard_id, table)
            shard_id += 1


def tar_shards(url_list: str | Sequence[str], skip: Container[int] = frozenset()) -> list[ShardSpec]:
    """One spec per input tar (braceexpand patterns, folders of ``*.tar``, lists; any fsspec url)."""
    specs: dict[int, ShardSpec] = {}
    for url in _tar_urls(url_list):
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".tar")
        if not name.isdigit():
            raise InputError(f"input tar {url} is not named by a shard id like 00042.tar")
        if int(name) in specs:
            raise InputError(f"two input tars have shard id {name}: {specs[int(name)].input_path} and {url}")
        specs[int(name)] = ShardSpec(shard_id=int(name), input_path=url, row_count=0)
    return [spec for shard_id, spec in sorted(specs.items()) if shard_id not in skip]


def _tar_urls(url_list: str | Sequence[str]) -> list[str]:
    patterns = [url_list] if isinstance(url_list, str) else list(url_list)
    urls = []
    for url in (expanded for pattern in patterns for expanded in braceexpand.braceexpand(pattern)):
        fs, path = fresh_fs(url)
        if fs.isdir(path):
            found = sorted(name for name in fs.glob(f"{path.rstrip('/')}/*.tar"))
            urls += [name if "file" in fs.protocol else fs.unstrip_protocol(name) for name in found]
        elif fs.exists(path):
            urls.append(url)
        else:
            raise InputError(f"input tar {url} does not exist")
    if not urls:
        raise InputError(f"no input tar found in {url_list}")
    return urls


def _sampled_skip(job: JobConfig, files: list[str], skip: Container[int]) -> Container[int]:
    """``skip`` plus the shards that ``reading.sampler`` leaves out."""
    sampler = job.config.reading.sampler
    if sampler is None:
        return skip
    size = job.config.storage.number_sample_per_shard
    count = 0
    for path in files:
        rows = sum(batch.num_rows for batch in read_batches(path, job))
        count += math.ceil(rows / size)
    kept = set(sampler([i for i in range(count) if i not in skip]))
    return frozenset(i for i in range(count) if i not in kept)


def _cut(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Regroup batches into tables of ``size`` rows (the last may be shorter), in order."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == size:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


def shard_input_path(job: JobConfig, shard_dir: str, shard_id: int) -> str:
    """Where :func:`plan_shards` writes the input rows of ``shard_id``."""
    return f"{shard_dir.rstrip('/')}/{job.shard_name(shard_id)}.arrow"


def _write_shard(job: JobConfig, shard_dir: str, shard_id: int, table: pa.Table) -> ShardSpec:
    """Write ``table`` as an Arrow IPC file atomically (a temporary name, then rename), with its digest."""
    data = _canonical_ipc(table)
    path = shard_input_path(job, shard_dir, shard_id)
    fs, fs_path = fresh_fs(path)
    fs.makedirs(posixpath.dirname(fs_path), exist_ok=True)
    _owner_only(fs, posixpath.dirname(fs_path), 0o700)
    tmp = f"{fs_path}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(tmp, "wb") as handle:
            handle.write(data)
        _owner_only(fs, tmp, 0o600)
        fs.mv(tmp, fs_path)
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    digest = hashlib.sha256(data).hexdigest()[:16]
    return ShardSpec(shard_id=shard_id, input_path=path, row_count=table.num_rows, input_digest=digest)


def _canonical_ipc(table: pa.Table) -> pa.Buffer:
    """``table`` as an Arrow IPC file whose bytes depend only on its rows and schema: a copy into
    fresh buffers first, since a slice of a read batch keeps the bytes around it."""
    fresh = table.take(typed_array(range(table.num_rows), pa.int64())).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, fresh.schema) as writer:
        writer.write_table(fresh)
    return sink.getvalue()


def _owner_only(fs: AbstractFileSystem, path: str, mode: int) -> None:
    """The rows hold urls with their credentials: on a local disk, only their owner reads them."""
    if isinstance(fs, LocalFileSystem):
        os.chmod(path, mode)


def discard_temporary_input(spec: ShardSpec) -> None:
    """Delete a run's own copy of the shard's rows (credentials whole) once the shard is committed."""
    if spec.temporary_input:
        fs, path = fresh_fs(spec.input_path)
        fs.rm(path)


def read_shard_input(spec: ShardSpec) -> pa.Table:
    """The input rows of one shard, as written by :func:`plan_shards`."""
    try:
        fs, path = fresh_fs(spec.input_path)
        with fs.open(path, "rb") as handle:
            return pa.ipc.open_file(handle).read_all()
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"cannot read shard input {spec.input_path}: {error}") from error
