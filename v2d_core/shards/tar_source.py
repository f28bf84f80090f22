"""Reading a tar's members in order and copying their bytes out, the cheapest way the tar allows.

A plain tar on the local disk is read by seeking from header to header, and a member's bytes
go from the tar to their file inside the kernel (``sendfile``): no Python loop touches them.
Any other tar (compressed, or on another fsspec filesystem) is read as one stream, as
``tarfile``'s ``r|*`` mode reads it. Both raise :class:`tarfile.ReadError` where the tar
ends before a member's data does.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from fsspec.implementations.local import LocalFileSystem

from v2d_core.storage import fresh_fs

COPY_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class TarSource:
    """An open tar, and the descriptor of its file when its members are plain byte ranges of it."""

    tar: tarfile.TarFile
    descriptor: int | None = None

    def copy(self, member: tarfile.TarInfo, sink: BinaryIO) -> None:
        """Write the data of ``member`` (a regular file of this tar) to ``sink``."""
        if self.descriptor is None or member.issparse():  # a sparse member's data is not one byte range
            source = self.tar.extractfile(member)
            assert source is not None  # regular files always have data
            shutil.copyfileobj(source, sink, COPY_BLOCK)
            return
        sink.flush()
        offset, left = member.offset_data, member.size
        while left > 0:
            sent = os.sendfile(sink.fileno(), self.descriptor, offset, left)
            if sent == 0:
                raise tarfile.ReadError("unexpected end of data")
            offset, left = offset + sent, left - sent


@contextmanager
def open_tar(tar_url: str) -> Iterator[TarSource]:
    """The tar at ``tar_url`` (any fsspec url), opened for reading its members in order."""
    fs, path = fresh_fs(tar_url)
    if isinstance(fs, LocalFileSystem) and sys.platform == "linux":
        with open(path, "rb") as handle:
            tar = _plain_tar(handle)
            if tar is not None:
                with tar:
                    yield TarSource(tar, handle.fileno())
                return
    with fs.open(path, "rb") as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
        yield TarSource(tar)


def _plain_tar(handle: BinaryIO) -> tarfile.TarFile | None:
    """``handle`` opened as an uncompressed tar to seek in; None when it is compressed, or broken
    at its first header (the stream reader then says which)."""
    try:
        return tarfile.open(fileobj=handle, mode="r:")
    except tarfile.ReadError:
        return None
