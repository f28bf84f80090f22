"""The one writer interface every output format implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa

from v2d_core.sample import Sample
from v2d_core.shards import ShardStats
from v2d_core.shards.gate import ReplaceGate


@dataclass(frozen=True, slots=True)
class ShardTarget:
    """Where and how one shard is written.

    ``input_schema`` is the schema of the shard's input rows (``url``, optional
    ``caption`` / ``clips``, additional columns), so the status parquet has typed
    columns known before the first sample arrives.
    """

    output_folder: str
    shard_name: str
    encode_formats: dict[str, str]
    save_caption: bool
    input_schema: pa.Schema
    storage_options: dict[str, Any] | None = None
    gate: ReplaceGate | None = None  # when this shard may replace one written before (None: always)


class ShardWriter(ABC):
    """Writes one shard. Use as a context manager: a clean exit commits the shard
    (temporary names renamed into place), an exception discards everything written.

    ``write`` takes EVERY sample of the shard, successful or failed: failed ones go to
    the shard's ``.parquet`` only, never as media-less samples into the data files.
    """

    def __init__(self, target: ShardTarget) -> None:
        self.target = target

    @abstractmethod
    def write(self, sample: Sample) -> None:
        """Add one sample to the shard."""

    @abstractmethod
    def keep(self, row: Mapping[str, Any], parts: Mapping[str, Path]) -> None:
        """Copy one sample of an earlier version of this shard as it was: its parquet ``row`` and,
        if it succeeded, its data files by extension (``parts``), byte for byte."""

    @abstractmethod
    def add_stats(self, stats: ShardStats) -> None:
        """Write the shard's ``_stats.json``; it is committed last, with the rest of the shard."""

    @abstractmethod
    def commit(self) -> None:
        """Make the shard visible under its final names."""

    @abstractmethod
    def abort(self) -> None:
        """Remove whatever was written; the shard stays absent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
