"""``files``: a folder ``{shard}/`` holding ``{key}.mp4``, ``{key}.txt``, ``{key}.json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from v2d_core.writers.status import StatusWriter


class FilesWriter(StatusWriter):
    """Successful samples as plain files in the shard's folder."""

    output_format = "files"

    def _open(self) -> None:
        self._folder = self.outputs.temp(self.data_name)
        self.outputs.fs.makedirs(self._folder, exist_ok=True)

    def _add(self, key: str, parts: Mapping[str, Path | bytes]) -> None:
        fs = self.outputs.fs
        for ext, part in parts.items():
            path = f"{self._folder}/{key}.{ext}"
            if isinstance(part, Path):
                fs.put_file(str(part), path)
            else:
                fs.pipe_file(path, part)
