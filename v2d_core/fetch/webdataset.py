"""Samples of an existing webdataset tar, for the re-processing stages (subset, optical_flow).

Each input tar is one shard and keeps its id (``00042.tar`` stays shard 42). Members
are grouped by key as webdataset groups them (the name up to the first dot of its
basename); media members become streams, ``json`` the sample's record, ``txt`` its
caption. Member data is copied to files named by us, never by the tar, so a member
called ``../../x`` cannot write outside the work folder; such a key is a failed row.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import Any

import braceexpand

from v2d_core.errors import InputError, NotMediaError
from v2d_core.fetch.base import FetchResult
from v2d_core.sample import Sample
from v2d_core.sharding import ShardSpec
from v2d_core.storage import fresh_fs

MODALITY_OF_EXTENSION = {
    **dict.fromkeys(("mp4", "webm", "mkv", "mov", "avi"), "video"),
    **dict.fromkeys(("m4a", "mp3", "wav", "flac", "ogg", "opus"), "audio"),
    "npy": "optical_flow",
}
RECORD_FIELDS = ("url", "key", "caption", "status", "error_message")
SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
COPY_BLOCK = 1 << 20

TarItem = tuple[Sample, FetchResult | BaseException, Path]


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


def read_tar_samples(tar_url: str, tmp: str) -> Iterator[TarItem]:
    """Each sample of the tar with its member files copied under ``tmp``, in tar order."""
    fs, path = fresh_fs(tar_url)
    with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
        group: list[tuple[str, str]] = []
        current, workdir = None, Path(tmp)
        for index, member in enumerate(tar):
            if not member.isfile():
                continue
            key, ext = _split_name(member.name)
            if key != current:
                if current is not None:
                    yield _sample(current, group, workdir)
                current, group = key, []
                workdir = Path(tmp) / str(index)
                workdir.mkdir()
            source = tar.extractfile(member)
            assert source is not None  # regular files always have data
            target = workdir / f"{len(group)}.{ext.replace('/', '_')}"
            with target.open("wb") as sink:
                shutil.copyfileobj(source, sink, COPY_BLOCK)
            group.append((ext, str(target)))
        if current is not None:
            yield _sample(current, group, workdir)


def _split_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the basename."""
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext


def _sample(key: str, parts: list[tuple[str, str]], workdir: Path) -> TarItem:
    files = dict(parts)
    record, problem = _record(files.get("json"))
    caption = Path(files["txt"]).read_text(errors="replace") if "txt" in files else record.get("caption")
    sample = Sample(
        key=key,
        url=str(record.get("url") or ""),
        caption=caption,
        metadata={name: value for name, value in record.items() if name not in RECORD_FIELDS},
    )
    if not SAFE_KEY.match(key):
        problem = f"unsafe sample key {key!r} in input tar"
    if problem:
        return sample, NotMediaError(problem), workdir
    streams = {
        MODALITY_OF_EXTENSION[ext]: Path(p) for ext, p in files.items() if ext in MODALITY_OF_EXTENSION
    }
    size = sum(path.stat().st_size for path in streams.values())
    return sample, FetchResult(streams=streams, bytes_downloaded=size), workdir


def _record(path: str | None) -> tuple[dict[str, Any], str | None]:
    """The sample's json record, or an empty one and the reason it is unreadable."""
    if path is None:
        return {}, None
    try:
        record = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as error:
        return {}, f"unreadable json member: {error}"
    if not isinstance(record, dict):
        return {}, "json member is not an object"
    return record, None
