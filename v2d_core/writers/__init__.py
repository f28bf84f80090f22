"""Output writers: one :class:`ShardWriter` per ``output_format``, chosen by :func:`make_writer`."""

from __future__ import annotations

import importlib

from v2d_core.errors import ConfigError
from v2d_core.writers.base import ShardTarget, ShardWriter

__all__ = ["WRITERS", "ShardTarget", "ShardWriter", "make_writer"]

# output_format -> module and class; a writer's module (tfrecord's protobuf) loads when it is chosen
WRITERS: dict[str, tuple[str, str]] = {
    "files": ("v2d_core.writers.files", "FilesWriter"),
    "webdataset": ("v2d_core.writers.webdataset", "WebDatasetWriter"),
    "parquet": ("v2d_core.writers.parquet", "ParquetShardWriter"),
    "tfrecord": ("v2d_core.writers.tfrecord", "TFRecordShardWriter"),
    "dummy": ("v2d_core.writers.dummy", "DummyWriter"),
}


def make_writer(output_format: str, target: ShardTarget) -> ShardWriter:
    """The writer for ``output_format``, opened on ``target``'s temporary names."""
    try:
        module, name = WRITERS[output_format]
    except KeyError:
        choices = ", ".join(WRITERS)
        raise ConfigError(f"output_format {output_format!r} is not one of: {choices}") from None
    writer_class: type[ShardWriter] = getattr(importlib.import_module(module), name)
    return writer_class(target)
