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
        self.users = 0  # fetches holding or waiting for a slot; under _hosts_lock
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


# Entries of idle hosts are dropped (see _leave): a url list of a million hosts keeps only the busy ones.
_hosts: dict[tuple[str, Limits], _Host] = {}
_hosts_lock = threading.RLock()


def host_key(url: str | None) -> str:
    """``host:port`` of ``url`` in lower case (empty for a url without a host)."""
    try:
        parts = urlsplit(url or "")
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return ""
    return f"{parts.hostname or ''}:{port}" if parts.hostname else ""


def _host(key: tuple[str, Limits], users: int = 0) -> _Host:
    """The entry of ``key``, created if needed, with ``users`` more users."""
    with _hosts_lock:
        host = _hosts.get(key)
        if host is None:
            host = _hosts[key] = _Host(key[1])
        host.users += users
        return host


def _leave(key: tuple[str, Limits], host: _Host) -> None:
    """One user fewer; forget the host when nobody uses it and its next start time has passed."""
    with _hosts_lock:
        host.users -= 1
        if host.users == 0 and host.next_start <= time.monotonic():
            _hosts.pop(key, None)


@contextlib.contextmanager
def polite(url: str, limits: Limits, deadline: float) -> Iterator[None]:
    """Hold one of the host's slots, from its turn to start until the block ends.

    ``deadline`` (monotonic) bounds the wait: past it, :class:`FetchTimeoutError`.
    """
    key = (host_key(url), limits)
    host = _host(key, users=1)
    try:
        if not host.slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise FetchTimeoutError(f"no free connection to {key[0]} before the fetch deadline")
        try:
            start = host.turn()
            if start > deadline:
                raise FetchTimeoutError(f"{key[0]} asked to wait past the fetch deadline")
            if (wait := start - time.monotonic()) > 0:  # no sleep(0): it would drop the GIL for nothing
                time.sleep(wait)
            yield
        finally:
            host.slots.release()
    finally:
        _leave(key, host)


def hold_off(url: str, limits: Limits, seconds: float) -> None:
    """No request to ``url``'s host starts in the next ``seconds`` (a server's ``Retry-After``)."""
    with _hosts_lock:  # not dropped as idle between its creation and the hold-off
        _host((host_key(url), limits)).hold_off(time.monotonic() + seconds)


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
