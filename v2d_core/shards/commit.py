"""Atomic commit of a shard's files over fsspec: temporary names, a journal of renames, recovery.

A shard is several files (its data, ``.parquet`` and ``_stats.json``) that must change
together. Each is written under a hidden temporary name (``.{name}.tmp-<uuid>``) in the
output folder. :meth:`TempOutputs.commit` writes the list of renames to a journal
(``.{shard}.commit``, itself written under a temporary name and renamed), renames the
temporaries into place in order (stats last), then deletes the journal. A process killed
anywhere in between leaves either no journal (the old shard intact, temporaries to delete)
or a journal that :func:`recover` replays: after recovery a shard is wholly its old or
wholly its new version, never a mix, and no temporary is left. On object storage a rename
is a copy then a delete (:func:`v2d_core.storage.move`): each final name still appears whole.

Before anything is renamed, a :class:`ReplaceGate` compares the new version's success rate
with the shard it would replace (its ``_stats.json``): a worse one is refused
(:class:`~v2d_core.errors.WorseShardError`, naming both rates) and the old shard stays.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, BinaryIO

from fsspec.implementations.local import LocalFileSystem

from v2d_core.direct_file import DirectFile
from v2d_core.shards.gate import ReplaceGate
from v2d_core.shards.layout import (
    JOURNAL_SUFFIX,
    STATS_SUFFIX,
    belongs_to,
    hidden_pattern,
    is_journal,
    is_temporary,
    journal_name,
    temporary_name,
)
from v2d_core.shards.stats import ShardStats
from v2d_core.storage import fresh_fs, move


class TempOutputs:
    """One shard's (``unit``'s) files and folders under temporary names, renamed into place on commit."""

    def __init__(self, folder: str, unit: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, root = fresh_fs(folder, storage_options)
        self.folder = root.rstrip("/")
        self.unit = unit
        self.fs.makedirs(self.folder, exist_ok=True)
        self._pending: list[tuple[str, str]] = []

    def temp(self, name: str) -> str:
        """A temporary path that :meth:`commit` renames to ``name``; commits go in call order."""
        temp = temporary_name(name)
        self._pending.append((temp, name))
        return f"{self.folder}/{temp}"

    def open(self, name: str) -> BinaryIO:
        """A new file opened for writing under a temporary name for ``name``."""
        return self.fs.open(self.temp(name), "wb")

    def open_stream(self, name: str) -> BinaryIO:
        """Like :meth:`open`, for one long sequential stream (a tar): on a local disk the bytes
        bypass the page cache (:class:`~v2d_core.direct_file.DirectFile`)."""
        if isinstance(self.fs, LocalFileSystem):
            return DirectFile(self.temp(name))  # type: ignore[return-value]
        return self.open(name)

    def commit(self, stats: ShardStats | None = None, gate: ReplaceGate | None = None) -> None:
        """Rename every temporary to its final name, replacing what is there, as one unit (see module doc).

        With ``stats`` (the new version's) and a ``gate``, the shard written before is replaced only if
        the gate lets it; else :class:`WorseShardError` and nothing is renamed.
        """
        if not self._pending:
            return
        if stats is not None and gate is not None:
            self._check_replacement(stats, gate)
        journal = f"{self.folder}/{journal_name(self.unit)}"
        staged = f"{self.folder}/{temporary_name(self.unit + JOURNAL_SUFFIX)}"
        with self.fs.open(staged, "w") as handle:
            json.dump(self._pending, handle)
        self.fs.mv(staged, journal)
        self._pending.clear()
        _replay(self.fs, self.folder, journal)

    def _check_replacement(self, stats: ShardStats, gate: ReplaceGate) -> None:
        old_path = f"{self.folder}/{self.unit}{STATS_SUFFIX}"
        if gate.force or not self.fs.exists(old_path):
            return
        with self.fs.open(old_path, "r") as handle:
            old = ShardStats.from_json(json.load(handle), old_path)
        gate.check(self.unit, old, stats)

    def abort(self) -> None:
        """Delete the temporaries not yet committed."""
        while self._pending:
            temp, _ = self._pending.pop()
            path = f"{self.folder}/{temp}"
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)


def recover(
    folder: str, units: Collection[str] | None = None, storage_options: dict[str, Any] | None = None
) -> None:
    """Finish the commits a killed process left half done, then delete its leftover temporaries.

    In the whole ``folder``, or only for the shards named in ``units``. Call it only when
    no writer is working on those shards.
    """
    fs, root = fresh_fs(folder, storage_options)
    root = root.rstrip("/")
    if not fs.isdir(root):
        return
    hidden = [path.rsplit("/", 1)[-1] for path in fs.glob(hidden_pattern(root, units))]
    for name in hidden:
        if is_journal(name) and belongs_to(name, units):
            _replay(fs, root, f"{root}/{name}")
    for name in hidden:
        if is_temporary(name) and belongs_to(name, units) and fs.exists(f"{root}/{name}"):
            fs.rm(f"{root}/{name}", recursive=True)


def _replay(fs: Any, folder: str, journal: str) -> None:
    """Do the renames ``journal`` lists that are not done yet, then delete it. Safe to repeat."""
    with fs.open(journal, "r") as handle:
        renames = json.load(handle)
    for temp, final in renames:
        source, target = f"{folder}/{temp}", f"{folder}/{final}"
        if fs.exists(source):  # else renamed before the process stopped
            move(fs, source, target)
    fs.rm(journal)
