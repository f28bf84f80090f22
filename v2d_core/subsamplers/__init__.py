"""Transforms applied to each fetched sample: one sample in, a list of samples out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from v2d_core.errors import ConfigError
from v2d_core.job import JobConfig
from v2d_core.sample import Sample


class Subsampler(ABC):
    """One transform. Raises :class:`~v2d_core.errors.SubsampleError` on failure."""

    @abstractmethod
    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        """Transform ``sample``; clipping returns several, the rest return one."""


def build_subsamplers(job: JobConfig) -> list[Subsampler]:
    """The chain the job's ``subsampling`` section asks for."""
    if job.config.subsampling:
        names = ", ".join(sorted(job.config.subsampling))
        raise ConfigError(f"subsampling {names}: no subsampler is available in this version; use subsampling: {{}}")
    return []


def apply_subsamplers(chain: Sequence[Subsampler], sample: Sample, workdir: Path) -> list[Sample]:
    """Run ``sample`` through every subsampler in order, flattening one-to-many steps."""
    samples = [sample]
    for subsampler in chain:
        samples = [out for current in samples for out in subsampler(current, workdir)]
    return samples
