"""``ShardStats``: one written shard's figures, the record its ``_stats.json`` holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from v2d_core.errors import InputError


@dataclass(frozen=True, kw_only=True, slots=True)
class ShardStats:
    """video2dataset's ``_stats.json`` fields: rows by final status, bytes fetched, times, reasons.

    ``status_dict`` maps ``success`` or an error message to its rows; ``proxy_failures`` (only with
    a proxy) maps each proxy's url, credentials masked, to the rows that failed through it.
    """

    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_subsample: int = 0
    bytes_downloaded: int = 0
    start_time: float = 0.0
    end_time: float = 0.0
    status_dict: Mapping[str, int] = field(default_factory=dict)
    proxy_failures: Mapping[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end_time - self.start_time

    @property
    def success_rate(self) -> float:
        """Successful rows / rows (0 for a shard of no rows)."""
        return self.successes / self.count if self.count else 0.0

    def to_json(self) -> dict[str, Any]:
        """The fields in ``_stats.json``'s order, ``duration`` last."""
        record = {
            "count": self.count,
            "successes": self.successes,
            "failed_to_download": self.failed_to_download,
            "failed_to_subsample": self.failed_to_subsample,
            "bytes_downloaded": self.bytes_downloaded,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "status_dict": dict(self.status_dict),
            "duration": self.duration,
        }
        return record | ({"proxy_failures": dict(self.proxy_failures)} if self.proxy_failures else {})

    @classmethod
    def from_json(cls, data: Any, source: str = "stats") -> ShardStats:
        """The record of a parsed ``_stats.json``; :class:`InputError` naming ``source`` if it is not one."""
        try:
            return cls(
                count=int(data["count"]),
                successes=int(data["successes"]),
                failed_to_download=int(data["failed_to_download"]),
                failed_to_subsample=int(data["failed_to_subsample"]),
                bytes_downloaded=int(data.get("bytes_downloaded", 0)),
                start_time=float(data["start_time"]),
                end_time=float(data["end_time"]),
                status_dict={str(reason): int(rows) for reason, rows in data["status_dict"].items()},
                proxy_failures={
                    str(proxy): int(rows) for proxy, rows in data.get("proxy_failures", {}).items()
                },
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(f"{source} is not a shard's stats: {type(error).__name__}: {error}") from None
