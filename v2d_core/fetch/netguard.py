"""The address guard and the deadline of one fetch, enforced where sockets are opened.

Urls come from strangers, and v2d may run inside a cloud network: without a guard, a row
``http://169.254.169.254/latest/meta-data/`` (or a redirect to it, or a host whose DNS answer
is ``10.0.0.5``) would fetch from the machine's own network. :class:`AddressPolicy` refuses
loopback, private, link-local, shared, multicast and reserved addresses
(:data:`NAMED_RANGES`, and anything else Python's ``ipaddress`` does not call global),
unless ``reading.allow_private_networks`` is set or the address is in ``reading.allowed_networks``.

The check runs inside urllib3's connection, at connect time: the host is resolved once,
each address checked, and the socket is connected to the checked address itself, so no
second DNS answer (rebinding) can slip between check and connect. Every connection of a
fetch, redirects included, goes through it: v2d's HTTP fetcher and yt-dlp's requests
handler both mount a :class:`GuardedAdapter`. A proxy the user configured is trusted;
through one, the target host is resolved and checked before the request (the proxy
resolves it again, which the guard cannot see).

:class:`FetchGuard` is also the fetch's watchdog: it tracks the fetch's connections and,
at its deadline, shuts their sockets down, so a server trickling a byte a second (in the
headers, the body, or under yt-dlp) ends the fetch, and no new connection opens after it. One
thread per process watches every fetch's deadline.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import ipaddress
import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import requests.adapters
import requests.utils
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.util.connection

from v2d_core.config import ReadingConfig
from v2d_core.errors import FetchTimeoutError, RefusedUrlError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NAMED_RANGES: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(network), name)
    for network, name in (
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared; carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local; cloud metadata"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("100::/64", "discard"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique local; private"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

# IPv6 ranges whose last 32 bits are an IPv4 address: NAT64 (RFC 6052, and RFC 8215's local-use
# /48, which deployments fill as a /96), IPv4-translated (SIIT, RFC 2765), IPv4-compatible (::/96).
LOW_32_BITS_IPV4 = tuple(
    ipaddress.ip_network(network)
    for network in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")
)
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
UNSPECIFIED_OR_LOOPBACK = (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1"))


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses a fetch may connect to."""

    allow_private: bool = False
    allowed_networks: tuple[Network, ...] = ()

    @classmethod
    def from_reading(cls, reading: ReadingConfig) -> AddressPolicy:
        networks = tuple(ipaddress.ip_network(network) for network in reading.allowed_networks)
        return cls(allow_private=reading.allow_private_networks, allowed_networks=networks)

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` is refused (its range), or None when it may be connected to."""
        if self.allow_private or any(address in network for network in self.allowed_networks):
            return None
        for embedded in _embedded_ipv4(address):
            if (reason := self.refusal(embedded)) is not None:
                return reason
        for network, name in NAMED_RANGES:
            if address.version == network.version and address in network:
                return f"{network} ({name})"
        return None if address.is_global else "a range that is not globally routable"

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to that may be connected to; :class:`RefusedUrlError`
        naming the address and its range when there are none. DNS errors propagate."""
        host = host.strip("[]")
        family = urllib3.util.connection.allowed_gai_family()
        found = [str(info[4][0]) for info in socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)]
        allowed: list[str] = []
        refused: list[tuple[str, str]] = []
        for text in dict.fromkeys(found):
            reason = self.refusal(ipaddress.ip_address(text.split("%", 1)[0]))
            if reason is None:
                allowed.append(text)
            else:
                refused.append((text, reason))
        if allowed or not refused:
            return allowed
        text, reason = refused[0]
        shown = host if host == text else f"{host} (resolved to {text})"
        raise RefusedUrlError(
            f"refused to connect to {shown}: {text} is in {reason}; "
            "set reading.allow_private_networks (or reading.allowed_networks) to fetch from it"
        )


def _embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address may carry (mapped, translated, compatible, NAT64, 6to4),
    each judged on its own: a host reached through any of them is refused if one is forbidden."""
    if not isinstance(address, ipaddress.IPv6Address) or address in UNSPECIFIED_OR_LOOPBACK:
        return []
    found = [address.ipv4_mapped, address.sixtofour]
    value = int(address)
    if address in NAT64_LOCAL and value & (1 << 40) - 1 == 0:
        # RFC 6052's /48 layout: 16 bits of the IPv4 address, the zero u-octet, 16 bits, zeros
        found.append(ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF))
    elif any(address in network for network in LOW_32_BITS_IPV4):
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return [embedded for embedded in found if embedded is not None]


class FetchGuard:
    """The address policy and the wall-clock deadline of one fetch (a context manager).

    At the deadline every connection the fetch opened is shut down and :attr:`expired`
    turns true; a connection opened after it raises :class:`FetchTimeoutError`.
    :attr:`refusal` keeps the last address refusal's message, for callers (yt-dlp) that
    report errors in their own words.
    """

    def __init__(self, policy: AddressPolicy, seconds: float | None) -> None:
        self.policy = policy
        self.seconds = seconds
        self.expired = False
        self.refusal: str | None = None
        self._connections: list[urllib3.connection.HTTPConnection] = []
        self._lock = threading.Lock()
        self._done = False

    def __enter__(self) -> Self:
        if self.seconds is not None:
            _WATCHDOG.watch(self, time.monotonic() + self.seconds)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with self._lock:
            self._done = True
            self._connections.clear()

    def addresses(self, host: str, port: int) -> list[str]:
        """:meth:`AddressPolicy.addresses`, remembering a refusal's message in :attr:`refusal`."""
        try:
            return self.policy.addresses(host, port)
        except RefusedUrlError as error:
            self.refusal = str(error)
            raise

    def track(self, connection: urllib3.connection.HTTPConnection) -> None:
        """Cut ``connection`` at the deadline; raise at once if it has passed."""
        with self._lock:
            if not self.expired:
                self._connections.append(connection)
                return
        raise FetchTimeoutError(f"the fetch ran past its deadline ({self.seconds:g}s)")

    def expire(self) -> None:
        """The deadline: shut down the fetch's connections (nothing, once the fetch has ended)."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            connections, self._connections = self._connections, []
        for connection in connections:
            sock = getattr(connection, "sock", None)
            if sock is not None:
                # The plain socket's shutdown, also for a TLS socket: it wakes a blocked read at once.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process that expires every guard at its deadline.

    A thread per fetch cost a thread start and stop, and their wake-ups, for each video. Here
    a fetch's deadline is one heap entry; the thread wakes only when the earliest one is due
    (a fetch that ends first is skipped then), so it sleeps through fetches that end in time.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._due: list[tuple[float, int, FetchGuard]] = []
        self._count = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, guard: FetchGuard, deadline: float) -> None:
        with self._condition:
            heapq.heappush(self._due, (deadline, next(self._count), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="v2d-fetch-deadlines", daemon=True)
                self._thread.start()
            elif self._due[0][2] is guard:  # earlier than the thread's next wake-up
                self._condition.notify()

    def _run(self) -> None:
        while True:
            for guard in self._wait_for_due():
                guard.expire()

    def _wait_for_due(self) -> list[FetchGuard]:
        with self._condition:
            while True:
                now = time.monotonic()
                due = []
                while self._due and self._due[0][0] <= now:
                    due.append(heapq.heappop(self._due)[2])
                if due:
                    return due
                self._condition.wait(self._due[0][0] - now if self._due else None)


_WATCHDOG = _Watchdog()


def _new_watchdog_after_fork() -> None:
    """A forked child has none of its parent's threads, nor its fetches."""
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_after_fork)


class _GuardedConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection that checks its addresses and reports to its fetch's guard."""

    def __init__(self, *args: Any, guard: FetchGuard, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        self._guard.track(self)
        if self.proxy is not None:  # the connection goes to a proxy the user configured
            return super()._new_conn()
        try:
            addresses = self._guard.addresses(self._dns_host, self.port)
        except socket.gaierror as error:
            raise urllib3.exceptions.NameResolutionError(self.host, self, error) from error
        host, failure = self._dns_host, None
        try:
            for address in addresses:
                self._dns_host = address  # connect to the checked address itself
                try:
                    return super()._new_conn()
                except (
                    urllib3.exceptions.NewConnectionError,
                    urllib3.exceptions.ConnectTimeoutError,
                ) as error:
                    failure = error
        finally:
            self._dns_host = host
        raise failure or urllib3.exceptions.NewConnectionError(self, f"{host} resolved to no address")


class _GuardedHTTPSConnection(_GuardedConnection, urllib3.connection.HTTPSConnection):
    """TLS still verifies, and sends SNI for, the url's host name (``self.host``)."""


class _GuardedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _GuardedConnection

    def __init__(self, *args: Any, guard: FetchGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn_kw["guard"] = guard


class _GuardedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection

    def __init__(self, *args: Any, guard: FetchGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn_kw["guard"] = guard


def guarded_pools(guard: FetchGuard) -> dict[str, Any]:
    """``pool_classes_by_scheme`` for a urllib3 pool manager whose connections ``guard`` watches."""
    return {
        "http": functools.partial(_GuardedHTTPPool, guard=guard),
        "https": functools.partial(_GuardedHTTPSPool, guard=guard),
    }


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter (or a base for one) whose every connection goes through ``guard``."""

    def __init__(self, *args: Any, guard: FetchGuard, **kwargs: Any) -> None:
        self.guard = guard  # before super().__init__, which builds the pool manager
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = guarded_pools(self.guard)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> urllib3.PoolManager:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # a SOCKS manager has its own connection classes
            manager.pool_classes_by_scheme = guarded_pools(self.guard)
        return manager

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        proxies: dict[str, str] = kwargs.get("proxies") or {}
        url = request.url or ""
        if proxies and requests.utils.select_proxy(url, proxies):
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self.guard.addresses(parts.hostname or "", port)
        return super().send(request, *args, **kwargs)


def guarded_session(guard: FetchGuard, session: requests.Session | None = None) -> requests.Session:
    """``session`` (a new one by default) with its http and https connections going through ``guard``."""
    session = session if session is not None else requests.Session()
    adapter = GuardedAdapter(guard=guard)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
