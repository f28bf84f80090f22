"""``webdataset``: ``{shard}.tar`` with ``{key}.mp4``, ``{key}.txt``, ``{key}.json`` members."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from v2d_core.sample import Sample
from v2d_core.writers.status import StatusWriter, members

TAR_BLOCK = 1 << 20


class WebDatasetWriter(StatusWriter):
    """Successful samples as members of one tar, streamed from disk."""

    def _open(self) -> None:
        self._file = self.outputs.open(f"{self.target.shard_name}.tar")
        # 1 MiB blocks: tarfile's 10 KiB default means thousands of small writes per video.
        self._tar = tarfile.open(fileobj=self._file, mode="w|", bufsize=TAR_BLOCK)  # noqa: SIM115 (closed in _close)
        self._tar.copybufsize = TAR_BLOCK  # type: ignore[attr-defined]  # real attribute, missing in typeshed

    def _add(self, sample: Sample) -> None:
        for ext, part in members(sample, self.target).items():
            info = tarfile.TarInfo(f"{sample.key}.{ext}")
            info.mtime = int(time.time())
            info.mode = 0o644
            if isinstance(part, Path):
                info.size = part.stat().st_size
                with part.open("rb") as source:
                    self._tar.addfile(info, source)
            else:
                info.size = len(part)
                self._tar.addfile(info, io.BytesIO(part))

    def _close(self) -> None:
        try:
            self._tar.close()
        finally:
            self._file.close()
