"""``webdataset``: ``{shard}.tar`` with ``{key}.mp4``, ``{key}.txt``, ``{key}.json`` members.

The tar is written by hand (header block, data, zero padding; two zero blocks at the
end, as POSIX ustar/pax asks) instead of through ``tarfile``'s stream mode, whose
buffer re-slices every block in Python: with a dozen fetch threads holding the GIL,
that made the shard's single writer thread the bottleneck of a download.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path

from v2d_core.writers.status import StatusWriter

COPY_BLOCK = 1 << 20


class WebDatasetWriter(StatusWriter):
    """Successful samples as members of one tar, streamed from disk."""

    def _open(self) -> None:
        self._file = self.outputs.open(f"{self.target.shard_name}.tar")
        self._written = 0

    def _add(self, key: str, parts: Mapping[str, Path | bytes]) -> None:
        for ext, part in parts.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.mtime = int(time.time())
            info.mode = 0o644
            info.size = part.stat().st_size if isinstance(part, Path) else len(part)
            self._emit(info.tobuf(format=tarfile.PAX_FORMAT))
            if isinstance(part, Path):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, self._file, COPY_BLOCK)
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
        try:
            self._emit(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
            self._pad(tarfile.RECORDSIZE)
        finally:
            self._file.close()
