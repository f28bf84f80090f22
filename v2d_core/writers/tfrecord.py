"""``tfrecord``: ``{shard}.tfrecord``, one ``tf.train.Example`` of bytes features per successful sample."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from tfrecord import TFRecordWriter

from v2d_core.writers.status import StatusWriter


class _FileTFRecordWriter(TFRecordWriter):
    """The ``tfrecord`` package's writer over an open file, so any fsspec filesystem works."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file


class TFRecordShardWriter(StatusWriter):
    """Successful samples as examples with features ``key``, one per extension, ``txt``, ``json``."""

    output_format = "tfrecord"

    def _open(self) -> None:
        self._records = _FileTFRecordWriter(self.outputs.open(self.data_name))

    def _add(self, key: str, parts: Mapping[str, Path | bytes]) -> None:
        features = {"key": (key.encode(), "byte")}
        for ext, part in parts.items():
            features[ext] = (part.read_bytes() if isinstance(part, Path) else part, "byte")
        self._records.write(features)

    def _close(self) -> None:
        self._records.close()
