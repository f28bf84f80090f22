"""Which row a shard starts fetching next: the earliest one whose host has a free slot.

A row for a host that already has ``per_host`` fetches running waits here, in the queue, not
on a fetch thread: a slow or rate-limited host then holds at most ``per_host`` threads, and the
rows of every other host keep flowing.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from v2d_core.fetch.politeness import host_key

Item = TypeVar("Item")


class HostQueue(Generic[Item]):
    """Items keyed by url, handed out in input order as far as each host's room allows."""

    def __init__(self, items: Iterable[tuple[str | None, Item]], per_host: int) -> None:
        self._per_host = per_host
        self._waiting: defaultdict[str, deque[tuple[int, Item]]] = defaultdict(deque)
        for index, (url, item) in enumerate(items):
            self._waiting[host_key(url)].append((index, item))
        self._running: Counter[str] = Counter()
        self._ready = [(rows[0][0], host) for host, rows in self._waiting.items()]
        heapq.heapify(self._ready)  # hosts with room and rows waiting, by their first row

    def pop(self) -> tuple[str, Item] | None:
        """The next item to start and its host, or None while every waiting row's host is full."""
        if not self._ready:
            return None
        _, host = heapq.heappop(self._ready)
        _, item = self._waiting[host].popleft()
        self._running[host] += 1
        self._offer(host)
        return host, item

    def done(self, host: str) -> None:
        """An item of ``host`` finished: its slot is free again."""
        self._running[host] -= 1
        if self._running[host] == self._per_host - 1:  # it was full, so it is not in the heap
            self._offer(host)

    def _offer(self, host: str) -> None:
        rows = self._waiting[host]
        if rows and self._running[host] < self._per_host:
            heapq.heappush(self._ready, (rows[0][0], host))
