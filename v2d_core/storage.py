"""Shard folders on any fsspec filesystem: listings read fresh, and moves that work on object stores.

fsspec keeps one filesystem object per set of arguments, and object-store filesystems (s3fs,
gcsfs) cache folder listings in it. Shards are written by other processes (pool workers, other
Dagster runs), so a listing this process cached earlier can be stale: :func:`fresh_fs` drops it.
Endpoints and credentials come from fsspec's usual places (arguments, fsspec config files,
``FSSPEC_S3_*`` variables, or the cloud SDK's own environment such as ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem


def fresh_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[AbstractFileSystem, str]:
    """The filesystem and path of ``url``, with any cached listing of that path (and its parents) dropped."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.invalidate_cache(path)
    return fs, path


def move(fs: AbstractFileSystem, source: str, target: str) -> None:
    """Move a file or folder to ``target``, replacing what is there.

    On a local disk this is one rename. Elsewhere a file is moved by the filesystem (on object
    stores: copied, then deleted; the target appears whole, at once) and a folder file by file:
    object stores have no folders (and a folder with nothing in it does not exist to move).
    """
    if fs.exists(target):
        fs.rm(target, recursive=True)
    if isinstance(fs, LocalFileSystem):
        fs.mv(source, target, recursive=True)
        return
    fs.invalidate_cache(source)
    if not fs.isdir(source):
        if fs.exists(source):
            fs.mv(source, target)
        return
    for path in fs.find(source):
        fs.mv(path, target + path[len(source) :])
    if fs.exists(source):  # filesystems with folders (memory://) keep the emptied one
        fs.rm(source, recursive=True)
