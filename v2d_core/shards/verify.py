"""Verifying written shards: per-shard checks (Dagster's asset checks) and a whole dataset (``v2d-verify``).

- ``readable``: the status parquet and the format's data open, and the data holds exactly the
  samples the parquet marks successful, each whole (its json and a media stream);
- ``row_count_matches_input``: every input row of the shard is in the parquet exactly once
  (a clipped row as its clips, ``{key}_00000``...), and nothing else is;
- ``stats_match_parquet``: the stats count the parquet's rows (a clipped row once), successes
  and failures by status (what ``v2d-verify`` checks in place of the input, which it has not);
- ``unique_keys``: no key appears twice in the parquet;
- ``success_rate``: successes / rows is at least a floor.
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from v2d_core.errors import InputError
from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.shards.layout import ShardLayout
from v2d_core.shards.reader import ShardReader, tar_keys

CLIP_KEY = re.compile(r"^(?P<source>.+)_\d{5}$")  # clip i of sample key: {key}_{i:05d}
CHECK_NAMES = ("readable", "row_count_matches_input", "unique_keys", "success_rate")
UNREADABLE = (OSError, tarfile.TarError, pa.ArrowException, ValueError, InputError)
DataKeys = dict[str, set[str]] | None | str  # key -> extensions; None: no data file; str: why unreadable


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One check's verdict on one shard."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatusRows:
    """A shard's parquet keys and statuses, in row order."""

    keys: list[str]
    statuses: list[str]

    @classmethod
    def read(cls, reader: ShardReader) -> StatusRows:
        table = reader.status(["key", "status"])
        return cls(table.column("key").to_pylist(), table.column("status").to_pylist())

    @property
    def successes(self) -> set[str]:
        return {key for key, status in zip(self.keys, self.statuses, strict=True) if status == "success"}


def input_keys(job: JobConfig, spec: ShardSpec) -> list[str]:
    """The sample keys of a shard's input: its rows' keys, or the samples of its input tar."""
    if job.input_format != "webdataset":
        return [job.sample_key(spec.shard_id, index) for index in range(spec.row_count)]
    return tar_keys(spec.input_path)


def check_shard(
    layout: ShardLayout, expected_keys: Sequence[str], min_success_rate: float, media: Collection[str]
) -> list[CheckOutcome]:
    """Every check of :data:`CHECK_NAMES` on a shard whose input samples are ``expected_keys`` and
    whose successful samples each hold one of the ``media`` extensions (none if empty)."""
    reader = ShardReader(layout)
    try:
        rows = StatusRows.read(reader)
    except UNREADABLE as error:
        return [CheckOutcome(name, False, f"status parquet unreadable: {error}") for name in CHECK_NAMES]
    return [
        data_matches(read_data(reader), rows, media),
        _row_count(rows.keys, expected_keys),
        unique_keys(rows.keys),
        _success_rate(Counter(rows.statuses), min_success_rate),
    ]


def read_data(reader: ShardReader) -> DataKeys:
    """The shard's :meth:`~ShardReader.data_keys`, or why they cannot be read."""
    try:
        return reader.data_keys()
    except UNREADABLE as error:
        return f"{reader.layout.data_path} unreadable: {error}"


def data_matches(data_keys: DataKeys, rows: StatusRows, media: Collection[str]) -> CheckOutcome:
    """The ``readable`` verdict: the data holds exactly the successful samples, each whole."""
    if isinstance(data_keys, str):
        return CheckOutcome("readable", False, data_keys)
    if data_keys is None:
        return CheckOutcome("readable", True, "status parquet readable (this format writes no data file)")
    successes = rows.successes
    complete = {key for key, extensions in data_keys.items() if _complete(extensions, media)}
    passed = complete == successes == set(data_keys)
    missing, extra = sorted(successes - complete)[:5], sorted(set(data_keys) - successes)[:5]
    metadata = {
        "data_samples": len(data_keys),
        "parquet_successes": len(successes),
        "incomplete_or_missing": ", ".join(missing),
        "not_in_parquet": ", ".join(extra),
    }
    description = "data holds the successful samples" if passed else "data and parquet disagree"
    return CheckOutcome("readable", passed, description, metadata)


def stats_match_parquet(reader: ShardReader, rows: StatusRows) -> CheckOutcome:
    """Whether the stats count what the parquet holds: rows (a clipped row once), by status."""
    try:
        stats = reader.stats()
    except UNREADABLE as error:
        return CheckOutcome("stats_match_parquet", False, f"stats unreadable: {error}")
    by_source: dict[str, str] = {}
    for key, status in zip(rows.keys, rows.statuses, strict=True):
        clip = CLIP_KEY.match(key)
        source = clip["source"] if clip else key
        if by_source.get(source) != "success":
            by_source[source] = status
    counted = Counter(by_source.values())
    stated = {
        "rows": stats.count,
        "success": stats.successes,
        "failed_to_download": stats.failed_to_download,
        "failed_to_subsample": stats.failed_to_subsample,
    }
    found = {"rows": len(by_source), **{status: counted[status] for status in list(stated)[1:]}}
    passed = stated == found
    wrong = ", ".join(
        f"{name} {stated[name]} in stats, {found[name]} in parquet"
        for name in stated
        if stated[name] != found[name]
    )
    description = f"stats count the parquet's {len(by_source)} rows" if passed else f"stats disagree: {wrong}"
    return CheckOutcome("stats_match_parquet", passed, description, {"stats": stated, "parquet": found})


def unique_keys(keys: list[str]) -> CheckOutcome:
    duplicates = sorted(key for key, count in Counter(keys).items() if count > 1)
    description = "every key once" if not duplicates else f"{len(duplicates)} duplicated key(s)"
    return CheckOutcome(
        "unique_keys", not duplicates, description, {"duplicates": ", ".join(duplicates[:10])}
    )


def _complete(extensions: set[str], media: Collection[str]) -> bool:
    """A sample is whole with its json and at least one media stream (audio may be absent);
    a stage that writes no media writes only the json."""
    return "json" in extensions and (not media or bool(extensions & set(media)))


def _row_count(keys: list[str], expected: Sequence[str]) -> CheckOutcome:
    """Each parquet key is an input key or a clip of one; every input key is covered, once."""
    wanted = set(expected)
    exact = {key for key in keys if key in wanted}
    clipped, strangers = set(), []
    for key in set(keys) - exact:
        clip = CLIP_KEY.match(key)
        if clip and clip["source"] in wanted:
            clipped.add(clip["source"])
        else:
            strangers.append(key)
    covered = exact | clipped
    missing, twice = sorted(wanted - covered), sorted(exact & clipped)
    passed = not (missing or strangers or twice)
    description = f"{len(keys)} parquet rows cover {len(covered)} of {len(wanted)} input rows"
    return CheckOutcome(
        "row_count_matches_input",
        passed,
        description,
        {
            "parquet_rows": len(keys),
            "input_rows": len(wanted),
            "missing": ", ".join(missing[:5]),
            "not_in_input": ", ".join(sorted(strangers)[:5]),
            "both_whole_and_clipped": ", ".join(twice[:5]),
        },
    )


def _success_rate(statuses: Counter[str], floor: float) -> CheckOutcome:
    rows = sum(statuses.values())
    rate = statuses["success"] / rows if rows else 0.0
    passed = rate >= floor
    description = f"success rate {rate:.1%} (floor {floor:.1%})"
    return CheckOutcome("success_rate", passed, description, {"success_rate": rate, "floor": floor})
