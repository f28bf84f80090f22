"""The shard plan on disk: per-shard input files from the core, and a manifest naming them.

``plan_shards`` writes ``{shard_dir}/{shard}.arrow``; the manifest beside them records each
shard's row count and a digest of its rows, so a partition key turns back into a
:class:`~v2d_core.inputs.sharding.ShardSpec` without re-reading the url list, and a shard whose rows
changed has a new digest (its data version). For an input webdataset the plan names the
existing tars instead (``00042.tar`` is shard ``00042``), with a digest of each tar's size
and modification time. No dagster import here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from v2d_core.errors import InputError
from v2d_core.inputs.sharding import ShardSpec, plan_shards, shard_input_path, tar_shards
from v2d_core.inputs.url_lists import input_files
from v2d_core.job import JobConfig
from v2d_core.shards import ShardLayout
from v2d_core.storage import fresh_fs

MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class PlannedShard:
    """One shard of the plan: its id, its input row count and a digest of its input file.

    ``input_path`` names an input tar; None means the plan's own ``{shard}.arrow``. A tar's
    row count is not known before it is read (0).
    """

    shard_id: int
    row_count: int
    digest: str
    input_path: str | None = None


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """Every shard of a dataset by partition key (``00042``)."""

    shards: Mapping[str, PlannedShard]

    @property
    def row_count(self) -> int:
        return sum(shard.row_count for shard in self.shards.values())

    @property
    def version(self) -> str:
        """A digest of every shard's rows: changes when any shard's input does."""
        text = json.dumps({key: shard.digest for key, shard in sorted(self.shards.items())})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def spec(self, job: JobConfig, shard_dir: str, key: str) -> ShardSpec:
        """The core's unit of work for partition ``key``."""
        try:
            shard = self.shards[key]
        except KeyError:
            raise InputError(
                f"shard {key} is not in the plan under {shard_dir}; materialize shard_plan"
            ) from None
        return ShardSpec(
            shard_id=shard.shard_id,
            input_path=shard.input_path or shard_input_path(job, shard_dir, shard.shard_id),
            row_count=shard.row_count,
        )


def cut_plan(job: JobConfig, shard_dir: str) -> ShardPlan:
    """``plan_shards``, the core's planning, with each shard's digest; the plan (not yet saved).

    For an input webdataset nothing is written: each tar is a shard of the plan.
    """
    tars = job.input_format == "webdataset"
    shards = {}
    for spec in plan_shards(job, shard_dir):
        shards[job.shard_name(spec.shard_id)] = PlannedShard(
            shard_id=spec.shard_id,
            row_count=spec.row_count,
            digest=_file_digest(spec.input_path) if tars else str(spec.input_digest),
            input_path=spec.input_path if tars else None,
        )
    return ShardPlan(shards=shards)


def save_plan(plan: ShardPlan, shard_dir: str) -> None:
    """Write the manifest of ``plan`` in ``shard_dir`` (temporary name, then rename)."""
    fs, root = fresh_fs(shard_dir)
    fs.makedirs(root, exist_ok=True)
    temporary = f"{root}/.{MANIFEST}.{uuid.uuid4().hex}.tmp"
    with fs.open(temporary, "w") as handle:
        json.dump({key: _as_json(shard) for key, shard in plan.shards.items()}, handle, indent=1)
    fs.mv(temporary, f"{root}/{MANIFEST}")


def read_plan(shard_dir: str, missing_ok: bool = False) -> ShardPlan:
    """The manifest :func:`save_plan` left in ``shard_dir``; an empty plan if none and ``missing_ok``."""
    path = f"{shard_dir.rstrip('/')}/{MANIFEST}"
    fs, fs_path = fresh_fs(path)
    try:
        with fs.open(fs_path, "r") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        if missing_ok:
            return ShardPlan(shards={})
        raise InputError(f"no shard plan at {path}; materialize the dataset's shard_plan first") from None
    return ShardPlan(shards={key: PlannedShard(**value) for key, value in data.items()})


def upstream_tar_specs(folder: str, partitions: list[str]) -> dict[str, ShardSpec]:
    """Partition key -> the spec reading ``{folder}/{key}.tar``, the tar an earlier stage wrote."""
    specs = {}
    for key in partitions:
        layout = ShardLayout(folder, key, "webdataset")
        if layout.data_path is None or not layout.is_done():
            raise InputError(
                f"shard {key} has no finished tar in {folder}; materialize that stage's shard first"
            )
        specs[key] = ShardSpec(shard_id=layout.shard_id, input_path=layout.data_path, row_count=0)
    return specs


def input_stamp(job: JobConfig) -> str:
    """A digest of the names, sizes and modification times of ``job``'s input files (or tars):
    it changes when the url list grows or a tar is added."""
    if job.input_format == "webdataset":
        paths = [spec.input_path for spec in tar_shards(job.url_list)]
    else:
        paths = input_files(job.url_list, job.input_format)
    stamps = [[path, _file_digest(path)] for path in paths]
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()[:16]


def _file_digest(url: str) -> str:
    """A digest of a file's size and modification time (or etag): cheap, no read of its bytes."""
    fs, path = fresh_fs(url)
    info = fs.info(path)
    stamp = [info.get("size"), info.get("mtime") or info.get("LastModified") or info.get("ETag")]
    return hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()[:16]


def _as_json(shard: PlannedShard) -> dict[str, int | str | None]:
    value: dict[str, int | str | None] = {
        "shard_id": shard.shard_id,
        "row_count": shard.row_count,
        "digest": shard.digest,
    }
    if shard.input_path is not None:
        value["input_path"] = shard.input_path
    return value
