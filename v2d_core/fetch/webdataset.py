"""Samples of an existing webdataset tar, for the re-processing stages (subset, optical_flow).

Each input tar is one shard and keeps its id (``00042.tar`` stays shard 42, see
:func:`v2d_core.inputs.sharding.tar_shards`). Members
are grouped by key as webdataset groups them (the name up to the first dot of its
basename); media members become streams, ``json`` the sample's record, ``txt`` its
caption; other members are skipped unread. Member data is copied to files named by us,
never by the tar, so a member called ``../../x`` cannot write outside the work folder.

A hostile tar gives failed rows, one per group of members, never an escape or a crash:
a key that is not a plain file name (``../../x``, ``/tmp/x``, ``a/b``, empty, longer than
``MAX_KEY_CHARS``) is refused rather than renamed, because keys must stay the same across
stages and a renamed key could collide with a real one; so is a link or device member,
and a key that comes back after other samples (it would be written twice). Undecodable
bytes in names, captions and json records become U+FFFD (:mod:`v2d_core.text`).
"""

from __future__ import annotations

import gzip
import json
import lzma
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2d_core.errors import NotMediaError
from v2d_core.fetch.base import FetchResult
from v2d_core.sample import Sample
from v2d_core.shards.reader import tar_members
from v2d_core.shards.tar_source import TarSource, open_tar
from v2d_core.text import valid_text

MODALITY_OF_EXTENSION = {
    **dict.fromkeys(("mp4", "webm", "mkv", "mov", "avi"), "video"),
    **dict.fromkeys(("m4a", "mp3", "wav", "flac", "ogg", "opus"), "audio"),
    "npy": "optical_flow",
}
KEPT_EXTENSIONS = frozenset((*MODALITY_OF_EXTENSION, "json", "txt"))
RECORD_FIELDS = ("url", "key", "caption", "status", "error_message")
SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_KEY_CHARS = 200

TarItem = tuple[Sample, FetchResult | BaseException, Path]
# What reading a damaged tar raises: tarfile's errors, a truncated or corrupt compressed stream.
BROKEN_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


@dataclass(slots=True)
class _Group:
    """The adjacent members of one sample: its key, its copied files by extension, what is wrong."""

    key: str
    workdir: Path
    problem: str | None
    files: dict[str, Path] = field(default_factory=dict)


def read_tar_samples(tar_url: str, tmp: str) -> Iterator[TarItem]:
    """Each sample of the tar with its member files copied under ``tmp``, in tar order.

    A tar that breaks (truncated, corrupt) keeps the samples read before the damage; the sample
    being read when it broke becomes one failed row saying where (a tar broken before its first
    member: a row keyed by the tar's name).
    """
    group: _Group | None = None
    source: TarSource | None = None
    try:
        with open_tar(tar_url) as source:
            seen: set[str] = set()
            for index, (key, ext, member) in enumerate(tar_members(source.tar)):
                if group is None or key != group.key:
                    if group is not None:
                        yield _sample(group)
                    group = _Group(key, Path(tmp) / str(index), _key_problem(key, seen))
                    group.workdir.mkdir()
                    seen.add(key)
                _copy_member(source, member, ext, group)
    except BROKEN_TAR_ERRORS as error:
        offset = source.tar.offset if source is not None else 0
        if group is None:
            name = tar_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".tar")
            group = _Group(name, Path(tmp) / "broken", None)
            group.workdir.mkdir()
        group.problem = f"input tar {tar_url} breaks near byte {offset}: {type(error).__name__}: {error}"
    if group is not None:
        yield _sample(group)


def _key_problem(key: str, seen: set[str]) -> str | None:
    if key in seen:
        return f"sample key {key!r} comes back in the input tar after other samples"
    if len(key) > MAX_KEY_CHARS:
        return f"sample key of {len(key)} characters in input tar (at most {MAX_KEY_CHARS})"
    if not SAFE_KEY.match(key):
        return f"unsafe sample key {key!r} in input tar: not a plain file name"
    return None


def _copy_member(source: TarSource, member: tarfile.TarInfo, ext: str, group: _Group) -> None:
    """Copy a member the sample uses to a file named by its position; note a member that is no file."""
    if not member.isfile():
        group.problem = (
            group.problem or f"member {member.name!r} of input tar is a link or device, not a file"
        )
        return
    if ext not in KEPT_EXTENSIONS:
        return
    target = group.workdir / f"{len(group.files)}.{ext}"
    with target.open("wb") as sink:
        source.copy(member, sink)
    group.files[ext] = target


def _sample(group: _Group) -> TarItem:
    record, problem = _record(group.files.get("json"))
    caption = (
        group.files["txt"].read_bytes().decode("utf-8", "replace")
        if "txt" in group.files
        else record.get("caption")
    )
    sample = Sample(
        key=valid_text(group.key),
        url=_text(record.get("url")) or "",
        caption=_text(caption),
        metadata={name: value for name, value in record.items() if name not in RECORD_FIELDS},
    )
    problem = group.problem or problem
    if problem:
        return sample, NotMediaError(problem), group.workdir
    streams = {
        MODALITY_OF_EXTENSION[ext]: p for ext, p in group.files.items() if ext in MODALITY_OF_EXTENSION
    }
    size = sum(path.stat().st_size for path in streams.values())
    return sample, FetchResult(streams=streams, bytes_downloaded=size), group.workdir


def _text(value: Any) -> str | None:
    """A record's url or caption as valid text; other JSON values as their JSON text."""
    if value is None:
        return None
    return valid_text(value) if isinstance(value, str) else json.dumps(value)


def _record(path: Path | None) -> tuple[dict[str, Any], str | None]:
    """The sample's json record, or an empty one and the reason it is unreadable."""
    if path is None:
        return {}, None
    try:
        record = json.loads(path.read_text("utf-8", "replace"))
    except (ValueError, RecursionError) as error:
        return {}, f"unreadable json member: {type(error).__name__}: {error}"
    if not isinstance(record, dict):
        return {}, "json member is not an object"
    return record, None
