"""The figures a run (or one shard) is judged by: rows by status, top errors, bytes, seconds, rates.

One shape for the live progress bar, the closing summary, Weights & Biases and Dagster's metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from v2d_core.sample import Status
from v2d_core.shards import ShardStats

TOP_ERRORS = 5


@dataclass(frozen=True, kw_only=True)
class Figures:
    """Counts over a set of input rows; ``errors`` maps an error message to its rows."""

    samples: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_subsample: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_stats(cls, stats: ShardStats) -> Figures:
        """The figures of one shard."""
        return cls(
            samples=stats.count,
            successes=stats.successes,
            failed_to_download=stats.failed_to_download,
            failed_to_subsample=stats.failed_to_subsample,
            bytes=stats.bytes_downloaded,
            seconds=stats.duration,
            errors={
                message: rows for message, rows in stats.status_dict.items() if message != Status.SUCCESS
            },
        )

    @classmethod
    def total(cls, parts: Iterable[Figures], seconds: float) -> Figures:
        """The sum of ``parts`` over a wall time of ``seconds`` (shards run side by side)."""
        parts = list(parts)
        errors: Counter[str] = Counter()
        for part in parts:
            errors.update(part.errors)
        return cls(
            samples=sum(part.samples for part in parts),
            successes=sum(part.successes for part in parts),
            failed_to_download=sum(part.failed_to_download for part in parts),
            failed_to_subsample=sum(part.failed_to_subsample for part in parts),
            bytes=sum(part.bytes for part in parts),
            seconds=seconds,
            errors=dict(errors),
        )

    @property
    def failures(self) -> int:
        return self.failed_to_download + self.failed_to_subsample

    @property
    def failures_by_status(self) -> dict[str, int]:
        return {
            str(Status.FAILED_TO_DOWNLOAD): self.failed_to_download,
            str(Status.FAILED_TO_SUBSAMPLE): self.failed_to_subsample,
        }

    @property
    def success_rate(self) -> float:
        return self.successes / self.samples if self.samples else 0.0

    @property
    def videos_per_second(self) -> float:
        """Successful samples per second."""
        return self.successes / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def top_errors(self, limit: int | None = TOP_ERRORS) -> list[tuple[str, int]]:
        """The ``limit`` most frequent error messages with their row counts (all when None)."""
        return Counter(self.errors).most_common(limit)

    def metrics(self) -> dict[str, int | float]:
        """The numbers as one flat mapping (what W&B charts)."""
        return {
            "samples": self.samples,
            "successes": self.successes,
            "failures": self.failures,
            **self.failures_by_status,
            "success_rate": self.success_rate,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "videos_per_second": self.videos_per_second,
            "bytes_per_second": self.bytes_per_second,
        }
