"""``ShardResult``: what happened to one shard, as a worker hands it back to the runner.

Its own small module: the runner unpickles it without importing the engine.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, fields

from v2d_core.redact import redact_text
from v2d_core.sample import Sample, Status
from v2d_core.shards.stats import ShardStats

STATS_FIELDS = tuple(stat.name for stat in fields(ShardStats))


@dataclass(slots=True)
class ShardResult:
    """What happened to one shard, counted as it happens; ``stats()`` is the record it commits.

    With a proxy, ``proxy_failures`` counts the rows that failed to download through it (over
    every run of the shard, retries included), by the proxy's url with credentials masked.
    """

    shard_id: int
    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_subsample: int = 0
    bytes_downloaded: int = 0
    start_time: float = field(default_factory=time.time)
    end_time: float = 0.0
    status_dict: Counter[str] = field(default_factory=Counter)
    proxy: str | None = None
    proxy_failures: Counter[str] = field(default_factory=Counter)

    def add(self, sample: Sample) -> None:
        """Count one input row by its final status (clips of a row count once, via the first)."""
        self.count += 1
        if sample.status is Status.SUCCESS:
            self.successes += 1
            self.status_dict["success"] += 1
            return
        if sample.status is Status.FAILED_TO_DOWNLOAD:
            self.failed_to_download += 1
            if self.proxy is not None:
                self.proxy_failures[redact_text(self.proxy)] += 1
        else:
            self.failed_to_subsample += 1
        self.status_dict[sample.error_message or str(sample.status)] += 1

    def stats(self) -> ShardStats:
        values = {name: getattr(self, name) for name in STATS_FIELDS}
        proxies = {redact_text(self.proxy): 0} if self.proxy is not None else {}
        counters = {"status_dict": dict(self.status_dict), "proxy_failures": proxies | self.proxy_failures}
        return ShardStats(**values | counters)

    @classmethod
    def resume(cls, shard_id: int, stats: ShardStats) -> ShardResult:
        """A result that goes on counting from a written shard's ``stats`` (a shard retried in place)."""
        values = {name: getattr(stats, name) for name in STATS_FIELDS}
        counters = {
            "status_dict": Counter(stats.status_dict),
            "proxy_failures": Counter(stats.proxy_failures),
        }
        return cls(shard_id=shard_id, **values | counters)
