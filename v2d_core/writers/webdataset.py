"""``webdataset``: ``{shard}.tar`` with ``{key}.mp4``, ``{key}.txt``, ``{key}.json`` members.

The tar is written by hand (header block, data, zero padding; two zero blocks at the
end, as POSIX ustar/pax asks) instead of through ``tarfile``'s stream mode, whose
buffer re-slices every block in Python: with a dozen fetch threads holding the GIL,
that made the shard's single writer thread the bottleneck of a download. Media files are
copied into a local tar by the kernel (``os.sendfile``), without the GIL.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from v2d_core.direct_file import DirectFile
from v2d_core.writers.status import StatusWriter

COPY_BLOCK = 1 << 20


class WebDatasetWriter(StatusWriter):
    """Successful samples as members of one tar, streamed from disk."""

    output_format = "webdataset"

    def _open(self) -> None:
        self._file = self.outputs.open_stream(self.data_name)
        self._written = 0

    def _add(self, key: str, parts: Mapping[str, Path | bytes]) -> None:
        for ext, part in parts.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.mtime = int(time.time())
            info.mode = 0o644
            info.size = part.stat().st_size if isinstance(part, Path) else len(part)
            self._emit(info.tobuf(format=tarfile.PAX_FORMAT))
            if isinstance(part, Path):
                copy_file(part, self._file, info.size)
                self._written += info.size
            else:
                self._emit(part)
            self._pad(tarfile.BLOCKSIZE)

    def _emit(self, data: bytes) -> None:
        self._file.write(data)
        self._written += len(data)

    def _pad(self, unit: int) -> None:
        remainder = self._written % unit
        if remainder:
            self._emit(tarfile.NUL * (unit - remainder))

    def _close(self) -> None:
        if self._file.closed:  # an abort after a failed commit: the tar is already finished or given up
            return
        try:
            self._emit(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
            self._pad(tarfile.RECORDSIZE)
        finally:
            self._file.close()


def copy_file(source: Path, sink: BinaryIO, size: int) -> None:
    """Append ``size`` bytes of ``source`` to ``sink``: in the kernel when ``sink`` is a local file."""
    with source.open("rb") as reader:
        if isinstance(sink, DirectFile):
            copied = sink.write_from(reader, size)
            if copied < size:
                raise OSError(f"{source} ended {size - copied} bytes short of its {size} bytes")
            return
        copied = _send_file(reader, sink, size)
        if copied == 0:
            shutil.copyfileobj(reader, sink, COPY_BLOCK)
        elif copied < size:
            raise OSError(f"{source} ended {size - copied} bytes short of its {size} bytes")


def _send_file(reader: BinaryIO, sink: BinaryIO, size: int) -> int:
    """Bytes copied with ``os.sendfile``; 0 when ``sink`` has no descriptor or the OS refuses."""
    try:
        descriptor = sink.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return 0
    sink.flush()
    copied = 0
    try:
        while copied < size and (sent := os.sendfile(descriptor, reader.fileno(), copied, size - copied)):
            copied += sent
    except OSError:
        if copied:
            raise
        return 0  # e.g. sendfile into a regular file is not supported on this OS
    return copied
