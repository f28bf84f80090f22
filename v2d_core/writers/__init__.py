"""Output writers: one :class:`ShardWriter` per ``output_format``, chosen by :func:`make_writer`."""

from __future__ import annotations

from v2d_core.errors import ConfigError
from v2d_core.writers.base import ShardTarget, ShardWriter
from v2d_core.writers.dummy import DummyWriter
from v2d_core.writers.files import FilesWriter
from v2d_core.writers.parquet import ParquetShardWriter
from v2d_core.writers.tfrecord import TFRecordShardWriter
from v2d_core.writers.webdataset import WebDatasetWriter

__all__ = ["WRITERS", "ShardTarget", "ShardWriter", "make_writer"]

WRITERS: dict[str, type[ShardWriter]] = {
    writer.output_format: writer
    for writer in (FilesWriter, WebDatasetWriter, ParquetShardWriter, TFRecordShardWriter, DummyWriter)
}


def make_writer(output_format: str, target: ShardTarget) -> ShardWriter:
    """The writer for ``output_format``, opened on ``target``'s temporary names."""
    try:
        writer_class = WRITERS[output_format]
    except KeyError:
        choices = ", ".join(WRITERS)
        raise ConfigError(f"output_format {output_format!r} is not one of: {choices}") from None
    return writer_class(target)
