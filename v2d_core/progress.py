"""A live progress bar over samples: videos/s and failures as shards report them."""

from __future__ import annotations

import time
from collections import Counter
from types import TracebackType
from typing import Self

from tqdm import tqdm

from v2d_core.sample import Status


class Progress:
    """Counts finished samples; shows a tqdm bar when ``enabled``."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.done = 0
        self.failures = 0
        self._per_shard: Counter[int] = Counter()
        self._started = time.monotonic()
        self._bar = tqdm(total=total, unit="video", disable=not enabled, dynamic_ncols=True)

    def sample_done(self, shard_id: int, status: str) -> None:
        """Record one finished input row of shard ``shard_id``."""
        self.rows_done(shard_id, rows=1, failures=int(status != Status.SUCCESS))

    def rows_done(self, shard_id: int, rows: int, failures: int) -> None:
        """Record ``rows`` finished input rows of shard ``shard_id``, ``failures`` of them failed."""
        self._per_shard[shard_id] += rows
        self.done += rows
        self.failures += failures
        self._bar.update(rows)
        elapsed = max(time.monotonic() - self._started, 1e-9)
        self._bar.set_postfix(videos_per_s=f"{self.done / elapsed:.1f}", failed=self.failures, refresh=False)

    def shard_failed(self, shard_id: int) -> None:
        """Take back the rows of a shard that failed as a whole; its retry counts them again."""
        rows = self._per_shard.pop(shard_id, 0)
        self.done -= rows
        self._bar.update(-rows)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.close()
