"""The one interface every transform implements: one sample in, a list of samples out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from v2d_core.sample import Sample


class Subsampler(ABC):
    """One transform. Raises :class:`~v2d_core.errors.SubsampleError` on failure.

    Analysis steps (probe, cut detection, subtitles) add metadata and return the same
    sample; the fused transcode returns one sample per output (several when clipping).
    New files go under ``workdir``; a step never deletes its input files.
    """

    @abstractmethod
    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        """Transform ``sample``; clipping returns several, the rest return one."""
