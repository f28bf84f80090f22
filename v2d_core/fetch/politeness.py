"""Per-host politeness, shared by every fetch thread of a process.

For each host (the url's lower-case host name and port, what its ``Host`` header names):

- at most ``reading.per_host_connections`` requests in flight (a semaphore per host);
- at most ``reading.per_host_rate`` request starts a second, evenly spaced;
- after a ``429``/``503`` with ``Retry-After``, no request starts before that time
  (:func:`hold_off`), whichever thread asks.

The shard loop uses :func:`host_key` and :attr:`Limits.connections` to choose which row to
start next, so rows waiting for a busy host never hold the threads other hosts need.
"""

from __future__ import annotations

import contextlib
import email.utils
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from v2d_core.config import ReadingConfig
from v2d_core.errors import FetchTimeoutError

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard one process may press one host."""

    connections: int = 4
    rate: float | None = None

    @classmethod
    def from_reading(cls, reading: ReadingConfig) -> Limits:
        return cls(connections=reading.per_host_connections, rate=reading.per_host_rate)


class _Host:
    """One host's in-flight slots and the time its next request may start."""

    def __init__(self, limits: Limits) -> None:
        self.slots = threading.BoundedSemaphore(limits.connections)
        self.interval = 1.0 / limits.rate if limits.rate else 0.0
        self.next_start = 0.0  # time.monotonic()
        self.lock = threading.Lock()

    def turn(self) -> float:
        """Claim the next start time (monotonic) of this host."""
        with self.lock:
            start = max(time.monotonic(), self.next_start)
            self.next_start = start + self.interval
            return start

    def hold_off(self, until: float) -> None:
        with self.lock:
            self.next_start = max(self.next_start, until)


_hosts: dict[tuple[str, Limits], _Host] = {}
_hosts_lock = threading.Lock()


def host_key(url: str | None) -> str:
    """``host:port`` of ``url`` in lower case (empty for a url without a host)."""
    try:
        parts = urlsplit(url or "")
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return ""
    return f"{parts.hostname or ''}:{port}" if parts.hostname else ""


def _host(url: str, limits: Limits) -> _Host:
    key = (host_key(url), limits)
    with _hosts_lock:
        host = _hosts.get(key)
        if host is None:
            host = _hosts[key] = _Host(limits)
        return host


@contextlib.contextmanager
def polite(url: str, limits: Limits, deadline: float) -> Iterator[None]:
    """Hold one of the host's slots, from its turn to start until the block ends.

    ``deadline`` (monotonic) bounds the wait: past it, :class:`FetchTimeoutError`.
    """
    host = _host(url, limits)
    if not host.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise FetchTimeoutError(f"no free connection to {host_key(url)} before the fetch deadline")
    try:
        start = host.turn()
        if start > deadline:
            raise FetchTimeoutError(f"{host_key(url)} asked to wait past the fetch deadline")
        time.sleep(max(0.0, start - time.monotonic()))
        yield
    finally:
        host.slots.release()


def hold_off(url: str, limits: Limits, seconds: float) -> None:
    """No request to ``url``'s host starts in the next ``seconds`` (a server's ``Retry-After``)."""
    _host(url, limits).hold_off(time.monotonic() + seconds)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date; None when
    absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
