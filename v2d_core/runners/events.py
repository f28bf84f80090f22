"""What a pool worker tells the planning process's progress relay: finished rows and committed shards.

Kept apart from :mod:`v2d_core.runners.progress` (the bar, the totals) so a worker imports only these.
"""

from __future__ import annotations

from typing import NamedTuple

from v2d_core.sample import Sample, Status


class SampleEvent(NamedTuple):
    """One finished input row; only a failed row carries its error, key and url."""

    shard_id: int
    status: str
    bytes: int
    error: str | None = None
    key: str | None = None
    url: str | None = None

    @classmethod
    def of(cls, shard_id: int, sample: Sample, downloaded: int) -> SampleEvent:
        if sample.status is Status.SUCCESS:
            return cls(shard_id, str(sample.status), downloaded)
        error = sample.error_message or str(sample.status)
        return cls(shard_id, str(sample.status), downloaded, error, sample.key, sample.url)


class SampleBatch(NamedTuple):
    """The rows a worker finished since its last batch (one message for many rows)."""

    events: tuple[SampleEvent, ...]


class ShardEvent(NamedTuple):
    """A shard was written and committed."""

    shard_id: int


WorkerEvent = SampleBatch | ShardEvent
