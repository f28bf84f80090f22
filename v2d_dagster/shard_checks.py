"""What the per-shard asset checks verify, as plain functions over a written shard (no dagster import).

- ``readable``: the status parquet and the format's data file open, and the data holds
  exactly the samples the parquet marks successful;
- ``row_count_matches_input``: every input row of the shard is in the parquet exactly once
  (a clipped row as its clips, ``{key}_00000``...), and nothing else is;
- ``unique_keys``: no key appears twice in the parquet;
- ``success_rate``: successes / rows is at least the stage's ``min_success_rate``.
"""

from __future__ import annotations

import re
import struct
import tarfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from v2d_core.job import JobConfig
from v2d_core.sharding import ShardSpec
from v2d_core.storage import fresh_fs

CLIP_KEY = re.compile(r"^(?P<source>.+)_\d{5}$")  # clip i of sample key: {key}_{i:05d}
CHECK_NAMES = ("readable", "row_count_matches_input", "unique_keys", "success_rate")
BLOCKING = frozenset({"readable", "success_rate"})  # a failure holds back the stages downstream


@dataclass(frozen=True, slots=True)
class ShardLocation:
    """A written shard: its folder, name (``00042``) and output format."""

    folder: str
    name: str
    output_format: str
    media_extensions: frozenset[str] = frozenset({"mp4"})

    def path(self, suffix: str) -> str:
        return f"{self.folder.rstrip('/')}/{self.name}{suffix}"

    @property
    def data_path(self) -> str | None:
        """The shard's data file or folder, or None when the format writes only the parquet."""
        suffix = {"webdataset": ".tar", "files": "", "tfrecord": ".tfrecord", "parquet": ".parquet"}
        return self.path(suffix[self.output_format]) if self.output_format in suffix else None


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    """One check's verdict on one shard."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def input_keys(job: JobConfig, spec: ShardSpec) -> list[str]:
    """The sample keys of a shard's input: its rows' keys, or the samples of its input tar."""
    if job.input_format != "webdataset":
        return [job.sample_key(spec.shard_id, index) for index in range(spec.row_count)]
    fs, path = fresh_fs(spec.input_path)
    with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        return list(_by_key(member.name.rsplit("/", 1)[-1] for member in tar if member.isfile()))


def check_shard(
    shard: ShardLocation, expected_keys: Sequence[str], min_success_rate: float
) -> list[CheckOutcome]:
    """Every check of :data:`CHECK_NAMES` on ``shard``, whose input samples are ``expected_keys``."""
    try:
        table = _status_table(shard.path(".parquet"))
    except (OSError, pa.ArrowException) as error:
        reason = f"status parquet unreadable: {error}"
        return [CheckOutcome(name, False, reason) for name in CHECK_NAMES]
    keys = table.column("key").to_pylist()
    statuses = Counter(table.column("status").to_pylist())
    successes = {
        key
        for key, status in zip(keys, table.column("status").to_pylist(), strict=True)
        if status == "success"
    }
    return [
        _readable(shard, successes),
        _row_count(keys, expected_keys),
        _unique(keys),
        _success_rate(statuses, min_success_rate),
    ]


def _readable(shard: ShardLocation, successes: set[str]) -> CheckOutcome:
    try:
        data_keys = _data_keys(shard)
    except (OSError, tarfile.TarError, pa.ArrowException, ValueError) as error:
        return CheckOutcome("readable", False, f"{shard.data_path} unreadable: {error}")
    if data_keys is None:
        return CheckOutcome("readable", True, "status parquet readable (this format writes no data file)")
    metadata = {"data_samples": len(data_keys), "parquet_successes": len(successes)}
    if isinstance(data_keys, int):  # tfrecord: records are counted, not named
        passed = data_keys == len(successes)
    else:
        complete = {
            key for key, extensions in data_keys.items() if _complete(extensions, shard.media_extensions)
        }
        passed = complete == successes == set(data_keys)
        missing, extra = sorted(successes - complete)[:5], sorted(set(data_keys) - successes)[:5]
        metadata |= {"incomplete_or_missing": ", ".join(missing), "not_in_parquet": ", ".join(extra)}
    description = "data holds the successful samples" if passed else "data and parquet disagree"
    return CheckOutcome("readable", passed, description, metadata)


def _data_keys(shard: ShardLocation) -> dict[str, set[str]] | int | None:
    """Sample key -> its file extensions in the shard's data (a record count for tfrecord);
    None if the format writes no data file."""
    path = shard.data_path
    if path is None:
        return None
    if shard.output_format == "parquet":
        return {
            key: {"json", *shard.media_extensions} for key, status in _key_status(path) if status == "success"
        }
    fs, root = fresh_fs(path)
    if shard.output_format == "files":  # a folder of no files is absent on object storage
        names = fs.ls(root, detail=False) if fs.exists(root) else []
        return _by_key(name.rsplit("/", 1)[-1] for name in names)
    with fs.open(root, "rb") as handle:
        if shard.output_format == "webdataset":
            with tarfile.open(fileobj=handle, mode="r|") as tar:
                return _by_key(member.name.rsplit("/", 1)[-1] for member in tar if member.isfile())
        return _count_tfrecords(handle)


def _complete(extensions: set[str], media: frozenset[str]) -> bool:
    """A sample is whole with its json and at least one media stream (audio may be absent);
    a stage that writes no media writes only the json."""
    return "json" in extensions and (not media or bool(extensions & media))


def _by_key(filenames: Iterable[str]) -> dict[str, set[str]]:
    """webdataset's rule: a member's key is its name up to the first dot, the rest its extension."""
    keys: dict[str, set[str]] = {}
    for filename in filenames:
        key, _, extension = filename.partition(".")
        keys.setdefault(key, set()).add(extension)
    return keys


def _status_table(path: str) -> pa.Table:
    """The key and status columns of a parquet, read through fsspec (and so its storage config)."""
    fs, fs_path = fresh_fs(path)
    with fs.open(fs_path, "rb") as handle:
        return pq.read_table(handle, columns=["key", "status"])


def _key_status(path: str) -> list[tuple[str, str]]:
    table = _status_table(path)
    return list(zip(table.column("key").to_pylist(), table.column("status").to_pylist(), strict=True))


def _count_tfrecords(handle: Any) -> int:
    """Records in a TFRecord file: each is length (u64), crc (u32), data, crc (u32)."""
    count = 0
    while header := handle.read(12):
        if len(header) < 12:
            raise ValueError("truncated record header")
        (length,) = struct.unpack("<Q", header[:8])
        body = handle.read(length + 4)
        if len(body) < length + 4:
            raise ValueError("truncated record")
        count += 1
    return count


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


def _unique(keys: list[str]) -> CheckOutcome:
    duplicates = sorted(key for key, count in Counter(keys).items() if count > 1)
    description = "every key once" if not duplicates else f"{len(duplicates)} duplicated key(s)"
    return CheckOutcome(
        "unique_keys", not duplicates, description, {"duplicates": ", ".join(duplicates[:10])}
    )


def _success_rate(statuses: Counter[str], floor: float) -> CheckOutcome:
    rows = sum(statuses.values())
    rate = statuses["success"] / rows if rows else 0.0
    passed = rate >= floor
    description = f"success rate {rate:.1%} (floor {floor:.1%})"
    return CheckOutcome("success_rate", passed, description, {"success_rate": rate, "floor": floor})
