"""``ShardResult``: what happened to one shard, as a worker hands it back to the runner.

Its own small module: the runner unpickles it without importing the engine.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from v2d_core.sample import Sample, Status


@dataclass(slots=True)
class ShardResult:
    """What happened to one shard; ``stats()`` is its ``_stats.json``."""

    shard_id: int
    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_subsample: int = 0
    bytes_downloaded: int = 0
    start_time: float = field(default_factory=time.time)
    end_time: float = 0.0
    status_dict: Counter[str] = field(default_factory=Counter)

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time

    def add(self, sample: Sample) -> None:
        """Count one input row by its final status (clips of a row count once, via the first)."""
        self.count += 1
        if sample.status is Status.SUCCESS:
            self.successes += 1
            self.status_dict["success"] += 1
            return
        if sample.status is Status.FAILED_TO_DOWNLOAD:
            self.failed_to_download += 1
        else:
            self.failed_to_subsample += 1
        self.status_dict[sample.error_message or str(sample.status)] += 1

    def stats(self) -> dict[str, Any]:
        """video2dataset's ``_stats.json`` fields."""
        stats = asdict(self)
        stats.pop("shard_id")
        stats["duration"] = self.duration
        stats["status_dict"] = dict(self.status_dict)
        return stats
