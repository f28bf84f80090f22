"""``ShardLayout``: every file name of a written shard, and whether the shard is done.

A shard ``00042`` in an output folder is its data (``00042.tar``, ``00042.tfrecord``,
the folder ``00042/``; the parquet itself for ``parquet``; none for ``dummy``), its status
parquet ``00042.parquet`` and its stats ``00042_stats.json``, written last: the stats are the
"done" marker. While a shard is written its files have hidden temporary names
(``.00042.tar.tmp-<uuid>``) and a commit goes through a journal ``.00042.commit``
(:mod:`v2d_core.shards.commit`); its samples are worked on in local folders named by
:func:`work_prefix`.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from v2d_core.storage import fresh_fs

STATS_SUFFIX = "_stats.json"
JOURNAL_SUFFIX = ".commit"
DATA_SUFFIX = {"webdataset": ".tar", "tfrecord": ".tfrecord", "parquet": ".parquet", "files": ""}
_TEMPORARY = re.compile(r"\..+\.tmp-[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class ShardLayout:
    """The files of shard ``name`` (``00042``) written in ``output_format`` under ``folder``."""

    folder: str
    name: str
    output_format: str

    @property
    def shard_id(self) -> int:
        return int(self.name)

    @property
    def data_name(self) -> str | None:
        """The data file's (or folder's) name; None for a format that writes only the parquet."""
        suffix = DATA_SUFFIX.get(self.output_format)
        return None if suffix is None else f"{self.name}{suffix}"

    @property
    def parquet_name(self) -> str:
        return f"{self.name}.parquet"

    @property
    def stats_name(self) -> str:
        return f"{self.name}{STATS_SUFFIX}"

    @property
    def data_path(self) -> str | None:
        return None if self.data_name is None else self.path(self.data_name)

    @property
    def parquet_path(self) -> str:
        return self.path(self.parquet_name)

    @property
    def stats_path(self) -> str:
        return self.path(self.stats_name)

    def path(self, file_name: str) -> str:
        return f"{self.folder.rstrip('/')}/{file_name}"

    def is_done(self) -> bool:
        """Whether the shard is committed: its stats, renamed into place last, exist."""
        fs, path = fresh_fs(self.stats_path)
        return bool(fs.exists(path))


def work_prefix(output_folder: str, shard_name: str | None = None) -> str:
    """The prefix of the local work folders (in ``tmp_dir``) of shard ``shard_name`` of
    ``output_folder`` (of any of its shards if None): a later run finds what a killed one left."""
    folder = f"v2d-{hashlib.sha1(output_folder.encode()).hexdigest()[:10]}-"
    return folder if shard_name is None else f"{folder}{shard_name}-"


def done_shards(folder: str) -> set[int]:
    """The ids of the shards committed in ``folder`` (their stats exist)."""
    fs, root = fresh_fs(folder)
    names = (
        path.rsplit("/", 1)[-1].removesuffix(STATS_SUFFIX) for path in fs.glob(f"{root}/*{STATS_SUFFIX}")
    )
    return {int(name) for name in names if name.isdigit()}


def journal_name(shard_name: str) -> str:
    """The hidden journal of a commit of shard ``shard_name`` in progress."""
    return f".{shard_name}{JOURNAL_SUFFIX}"


def is_journal(hidden_name: str) -> bool:
    return hidden_name.endswith(JOURNAL_SUFFIX)


def temporary_name(file_name: str) -> str:
    """A hidden name, unique to this writer, under which ``file_name`` is written before its commit."""
    return f".{file_name}.tmp-{uuid.uuid4().hex}"


def is_temporary(hidden_name: str) -> bool:
    return _TEMPORARY.fullmatch(hidden_name) is not None


def hidden_pattern(folder: str, names: Collection[str] | None) -> str:
    """A glob of the hidden files (temporaries, journals) of the shards ``names`` (all if None)."""
    return f"{folder}/.*" if names is None or len(names) != 1 else f"{folder}/.{next(iter(names))}[._]*"


def belongs_to(hidden_name: str, names: Collection[str] | None) -> bool:
    """Whether a hidden ``.{name}.xxx`` / ``.{name}_stats.json...`` is of one of shards ``names``
    (any if None)."""
    return names is None or any(hidden_name[1:].startswith((f"{name}.", f"{name}_")) for name in names)
