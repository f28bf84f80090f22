"""Verifying a whole output folder, without its input: what ``v2d-verify`` reports.

Each shard (a ``{shard}.parquet`` or ``{shard}_stats.json``) must be committed, readable, its
data must hold exactly its successful samples, its stats must count its parquet, and its keys
must be unique; no key may appear in two shards. The output format is found from the files
each shard has, unless given.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from v2d_core.errors import InputError
from v2d_core.shards.layout import DATA_SUFFIX, STATS_SUFFIX, ShardLayout
from v2d_core.shards.reader import ShardReader
from v2d_core.shards.verify import (
    UNREADABLE,
    CheckOutcome,
    DataKeys,
    StatusRows,
    data_matches,
    read_data,
    stats_match_parquet,
    unique_keys,
)
from v2d_core.storage import fresh_fs

VERIFY_CHECKS = ("committed", "readable", "stats_match_parquet", "unique_keys")


@dataclass(frozen=True, slots=True)
class ShardVerdict:
    """The checks of one shard and the keys of its parquet."""

    name: str
    output_format: str
    keys: list[str]
    outcomes: list[CheckOutcome]

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)


@dataclass(frozen=True, slots=True)
class DatasetReport:
    """Every shard's verdict, and the keys found in more than one shard."""

    folder: str
    shards: list[ShardVerdict]
    keys_in_several_shards: list[str]

    @property
    def passed(self) -> bool:
        return bool(self.shards) and not self.keys_in_several_shards and all(s.passed for s in self.shards)

    def lines(self) -> list[str]:
        """One line per failed check, then a verdict line."""
        lines = [
            f"{shard.name} {outcome.name}: {outcome.description}{_details(outcome)}"
            for shard in self.shards
            for outcome in shard.outcomes
            if not outcome.passed
        ]
        if self.keys_in_several_shards:
            shown = ", ".join(self.keys_in_several_shards[:10])
            lines.append(f"{len(self.keys_in_several_shards)} key(s) in more than one shard: {shown}")
        rows = sum(len(shard.keys) for shard in self.shards)
        formats = ", ".join(sorted({shard.output_format for shard in self.shards}))
        failed = sum(not shard.passed for shard in self.shards)
        if not self.shards:
            verdict = "no shard found"
        elif self.passed:
            verdict = f"{len(self.shards)} shard(s) ({formats}), {rows} rows: every check passed"
        else:
            verdict = f"{failed} of {len(self.shards)} shard(s) ({formats}) fail a check"
        return [*lines, f"{self.folder}: {verdict}"]


def verify_dataset(folder: str, output_format: str | None = None) -> DatasetReport:
    """Check every shard in ``folder``; ``output_format`` None: each shard's is found from its files."""
    fs, root = fresh_fs(folder)
    if not fs.isdir(root):
        raise InputError(f"{folder} is not a folder")
    readers = [
        ShardReader(ShardLayout(folder, name, output_format or detect_format(folder, name)))
        for name in shard_names(folder)
    ]
    data = [read_data(reader) for reader in readers]
    media = dataset_media(data)
    verdicts = [verify_shard(reader, keys, media) for reader, keys in zip(readers, data, strict=True)]
    counts = Counter(key for verdict in verdicts for key in set(verdict.keys))
    return DatasetReport(folder, verdicts, sorted(key for key, count in counts.items() if count > 1))


def dataset_media(data: list[DataKeys]) -> set[str]:
    """The media extensions of a dataset: those its samples hold besides json and txt. A
    successful sample must hold one of them (a stage that writes no media: none)."""
    extensions = (ext for keys in data if isinstance(keys, dict) for exts in keys.values() for ext in exts)
    return set(extensions) - {"json", "txt"}


def verify_shard(reader: ShardReader, data_keys: DataKeys, media: set[str]) -> ShardVerdict:
    """The checks of :data:`VERIFY_CHECKS` on one shard whose data :func:`read_data` read."""
    layout = reader.layout
    committed = layout.is_done()
    done = CheckOutcome(
        "committed", committed, "stats written" if committed else f"no {layout.stats_name}: never committed"
    )
    try:
        rows = StatusRows.read(reader)
    except UNREADABLE as error:
        reason = f"status parquet unreadable: {error}"
        return ShardVerdict(
            layout.name,
            layout.output_format,
            [],
            [done] + [CheckOutcome(name, False, reason) for name in VERIFY_CHECKS[1:]],
        )
    outcomes = [done, data_matches(data_keys, rows, media)]
    if committed:
        outcomes.append(stats_match_parquet(reader, rows))
    outcomes.append(unique_keys(rows.keys))
    return ShardVerdict(layout.name, layout.output_format, rows.keys, outcomes)


def shard_names(folder: str) -> list[str]:
    """The shards of ``folder``: the names of its ``{shard}.parquet`` and ``{shard}_stats.json``."""
    fs, root = fresh_fs(folder)
    names = set()
    for path in fs.ls(root, detail=False):
        base = path.rstrip("/").rsplit("/", 1)[-1]
        for suffix in (".parquet", STATS_SUFFIX):
            if base.endswith(suffix) and base.removesuffix(suffix).isdigit():
                names.add(base.removesuffix(suffix))
    return sorted(names)


def detect_format(folder: str, name: str) -> str:
    """The output format shard ``name`` was written in, from its files."""
    for output_format in ("webdataset", "tfrecord", "files"):
        fs, path = fresh_fs(f"{folder.rstrip('/')}/{name}{DATA_SUFFIX[output_format]}")
        if fs.exists(path):
            return output_format
    try:
        media = ShardReader(ShardLayout(folder, name, "parquet")).media_columns()
    except UNREADABLE:
        return "dummy"
    return "parquet" if media else "dummy"


def _details(outcome: CheckOutcome) -> str:
    shown = [
        f"{name}: {value}" for name, value in outcome.metadata.items() if isinstance(value, str) and value
    ]
    return f" ({'; '.join(shown)})" if shown else ""
