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
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from v2d_core.errors import ConfigError, WorseShardError
from v2d_core.storage import fresh_fs, move

JOURNAL_SUFFIX = ".commit"
_TEMPORARY = re.compile(r"\..+\.tmp-[0-9a-f]{32}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplaceGate:
    """When a shard's new version may replace the one already written.

    Refused when the new success rate is below the old one and either below
    ``min_success_rate`` or more than ``max_drop`` below the old one. ``force`` replaces anyway.
    """

    min_success_rate: float = 0.0
    max_drop: float | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_success_rate <= 1.0:
            raise ConfigError(f"min_success_rate must be between 0 and 1, got {self.min_success_rate}")
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 1.0:
            raise ConfigError(f"max_success_drop must be between 0 and 1, got {self.max_drop}")

    def check(self, shard: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        """Raise :class:`WorseShardError` if stats ``new`` may not replace stats ``old``."""
        old_rate, new_rate = success_rate(old), success_rate(new)
        if self.force or new_rate >= old_rate:
            return
        if new_rate < self.min_success_rate:
            reason = f"below the floor min_success_rate {self.min_success_rate:.1%}"
        elif self.max_drop is not None and old_rate - new_rate > self.max_drop:
            reason = f"more than max_success_drop {self.max_drop:.1%} below it"
        else:
            return
        raise WorseShardError(
            f"shard {shard} kept: its new version's success rate {new_rate:.1%} "
            f"({new.get('successes', 0)}/{new.get('count', 0)}) is {reason}, and the shard it would replace "
            f"has {old_rate:.1%} ({old.get('successes', 0)}/{old.get('count', 0)}); rewrite it on purpose "
            "with force (or retry_failed)"
        )


def success_rate(stats: Mapping[str, Any]) -> float:
    """Successful rows / rows of a shard's stats (0 for a shard of no rows)."""
    count = int(stats.get("count", 0))
    return int(stats.get("successes", 0)) / count if count else 0.0


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
        temp = f".{name}.tmp-{uuid.uuid4().hex}"
        self._pending.append((temp, name))
        return f"{self.folder}/{temp}"

    def open(self, name: str) -> BinaryIO:
        """A new file opened for writing under a temporary name for ``name``."""
        return self.fs.open(self.temp(name), "wb")

    def commit(self, stats: Mapping[str, Any] | None = None, gate: ReplaceGate | None = None) -> None:
        """Rename every temporary to its final name, replacing what is there, as one unit (see module doc).

        With ``stats`` (the new version's) and a ``gate``, the shard written before is replaced only if
        the gate lets it; else :class:`WorseShardError` and nothing is renamed.
        """
        if not self._pending:
            return
        if stats is not None and gate is not None:
            self._check_replacement(stats, gate)
        journal = f"{self.folder}/.{self.unit}{JOURNAL_SUFFIX}"
        staged = f"{self.folder}/.{self.unit}{JOURNAL_SUFFIX}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(staged, "w") as handle:
            json.dump(self._pending, handle)
        self.fs.mv(staged, journal)
        self._pending.clear()
        _replay(self.fs, self.folder, journal)

    def _check_replacement(self, stats: Mapping[str, Any], gate: ReplaceGate) -> None:
        old_path = f"{self.folder}/{self.unit}_stats.json"
        if gate.force or not self.fs.exists(old_path):
            return
        with self.fs.open(old_path, "r") as handle:
            old = json.load(handle)
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
    pattern = f"{root}/.*" if units is None or len(units) != 1 else f"{root}/.{next(iter(units))}[._]*"
    hidden = [path.rsplit("/", 1)[-1] for path in fs.glob(pattern)]
    for name in hidden:
        if name.endswith(JOURNAL_SUFFIX) and _unit_of(name, units):
            _replay(fs, root, f"{root}/{name}")
    for name in hidden:
        if _TEMPORARY.fullmatch(name) and _unit_of(name, units) and fs.exists(f"{root}/{name}"):
            fs.rm(f"{root}/{name}", recursive=True)


def _unit_of(hidden_name: str, units: Collection[str] | None) -> bool:
    """Whether ``.{unit}.xxx`` / ``.{unit}_stats.json...`` belongs to one of ``units`` (any, if None)."""
    return units is None or any(hidden_name[1:].startswith((f"{unit}.", f"{unit}_")) for unit in units)


def _replay(fs: Any, folder: str, journal: str) -> None:
    """Do the renames ``journal`` lists that are not done yet, then delete it. Safe to repeat."""
    with fs.open(journal, "r") as handle:
        renames = json.load(handle)
    for temp, final in renames:
        source, target = f"{folder}/{temp}", f"{folder}/{final}"
        if fs.exists(source):  # else renamed before the process stopped
            move(fs, source, target)
    fs.rm(journal)
