"""A threaded HTTP server on 127.0.0.1 serving real files plus the faults the wild web has.

Routes (``name`` is a file under the served folder):

- ``/files/{name}``            the file, with Content-Length
- ``/status/{code}/{name}``    always answers ``code``
- ``/delay/{s}/{name}``       the file after waiting ``s`` seconds (a slow origin)
- ``/gate/{gate}/{name}``      the file once the test calls ``open_gate(gate)``
- ``/flaky/{n}/{name}``        answers 503 the first ``n`` times for this path, then the file
- ``/stall/{name}``            sends headers, then no body until the client gives up
- ``/trickle/{name}``          sends headers, then the body one byte a second
- ``/slowheaders/{name}``      sends the status line, then the headers one byte a second
- ``/reset/{name}``            sends headers and half the body, then resets the connection
- ``/truncated/{name}``        the first third of the file, as if it were complete
- ``/empty/{name}``            200 with an empty body
- ``/page/{name}``             an HTML page with no video
- ``/embed/{name}``            an HTML page whose ``<video>`` plays ``/files/{name}`` (for yt-dlp)
- ``/embedurl?src={url}``      an HTML page whose ``<video>`` plays ``url`` (percent-encoded)
- ``/jsonld/{s}/{name}``       an HTML page announcing (schema.org JSON-LD) a video of ``s`` seconds
                               at ``/files/{name}``
- ``/redirect/{url}``          302 to ``url`` (percent-encoded, e.g. ``quote(target, safe="")``)
- ``/bigpage/{mib}``           an HTML page of ``mib`` MiB (for yt-dlp)
- ``/subtitled/{mib}/{name}``  an HTML page whose ``<video>`` plays ``/files/{name}`` with an English
                               WebVTT track of ``mib`` MiB
- ``/vtt/{mib}``               a WebVTT file of about ``mib`` MiB
- ``/robots/{tags}/{name}``    the file with the header ``X-Robots-Tag: {tags}`` (percent-encoded)
- ``/limited/{n}/{s}/{name}``  a rate-limiting host: 429 with ``Retry-After: 1`` while more than ``n``
                               requests with this ``Host`` header are running, else the file after
                               ``s`` seconds
- ``/retryafter/{n}/{value}/{name}``  429 with ``Retry-After: {value}`` (percent-encoded) the first ``n``
                               times for this path, then the file
- ``/needcookie/{cookie}/{name}``  the file if the request's ``Cookie`` header has ``{cookie}``
                               (percent-encoded ``name=value``), else 403

Every request is also counted by its ``Host`` header: how many run at once, at most
(:meth:`MediaServer.most_concurrent`), and when each path was asked (:meth:`MediaServer.times`).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

STALL_LIMIT_SECONDS = 30.0
GATE_LIMIT_SECONDS = 600.0


SIGNATURE = "s1gn4ture-Of-This-Url"  # the ``signed`` route's query signature
BASIC_AUTH = ("alice", "p@ss:w0rd")  # the ``signed`` route's user and password


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        # The query string is ignored, so many distinct urls can serve one file.
        route, _, rest = self.path.split("?", 1)[0].lstrip("/").partition("/")
        handler = getattr(self, f"_route_{route}", None)
        if handler is None:
            self._send(404, b"not found", "text/plain")
            return
        host = self.headers.get("Host", "")
        with self.server.lock:
            self.server.hits[self.path] += 1
            self.server.times[self.path].append(time.monotonic())
            self.server.started[route] += 1
            self.server.active[route] += 1
            self.server.host_active[host] += 1
            self.server.host_most[host] = max(self.server.host_most[host], self.server.host_active[host])
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                handler(rest)
        finally:
            with self.server.lock:
                self.server.active[route] -= 1
                self.server.host_active[host] -= 1

    def _file(self, name: str) -> bytes | None:
        path = (self.server.root / name).resolve()
        if self.server.root not in path.parents or not path.is_file():
            self._send(404, b"not found", "text/plain")
            return None
        return path.read_bytes()

    def _send(self, code: int, body: bytes, content_type: str = "video/mp4") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route_files(self, name: str) -> None:
        body = self._file(name)
        if body is not None:
            self._send(200, body)

    def _too_many(self, retry_after: str) -> None:
        self.send_response(429)
        self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route_limited(self, rest: str) -> None:
        limit, _, rest = rest.partition("/")
        seconds, _, name = rest.partition("/")
        with self.server.lock:
            over = self.server.host_active[self.headers.get("Host", "")] > int(limit)
            self.server.refused += over
        if over:
            self._too_many("1")
        elif not self.server.stopping.wait(float(seconds)):
            self._route_files(name)

    def _route_retryafter(self, rest: str) -> None:
        failures, _, rest = rest.partition("/")
        value, _, name = rest.partition("/")
        with self.server.lock:
            hit = self.server.hits[self.path]
        if hit <= int(failures):
            self._too_many(unquote(value))
        else:
            self._route_files(name)

    def _route_needcookie(self, rest: str) -> None:
        cookie, _, name = rest.partition("/")
        sent = [part.strip() for part in self.headers.get("Cookie", "").split(";")]
        if unquote(cookie) in sent:
            self._route_files(name)
        else:
            self._send(403, b"sign in first", "text/plain")

    def _route_status(self, rest: str) -> None:
        code, _, _ = rest.partition("/")
        self._send(int(code), b"error page", "text/plain")

    def _route_delay(self, rest: str) -> None:
        seconds, _, name = rest.partition("/")
        if not self.server.stopping.wait(float(seconds)):
            self._route_files(name)

    def _route_gate(self, rest: str) -> None:
        gate, _, name = rest.partition("/")
        if self.server.gate(gate).wait(GATE_LIMIT_SECONDS) and not self.server.stopping.is_set():
            self._route_files(name)

    def _route_flaky(self, rest: str) -> None:
        failures, _, name = rest.partition("/")
        with self.server.lock:
            hit = self.server.hits[self.path]
        if hit <= int(failures):
            self._send(503, b"try again", "text/plain")
            return
        self._route_files(name)

    def _route_signed(self, rest: str) -> None:
        """``signed/N/name``: 403 without ``sig=SIGNATURE`` in the query or the basic-auth
        credentials ``BASIC_AUTH``; with them, the first ``N`` requests of the url get 503."""
        query = self.path.partition("?")[2]
        basic = base64.b64encode(":".join(BASIC_AUTH).encode()).decode()
        signed = f"sig={SIGNATURE}" in query.split("&")
        if not signed and self.headers.get("Authorization") != f"Basic {basic}":
            self._send(403, b"signature or credentials missing", "text/plain")
            return
        self._route_flaky(rest)

    def _route_stall(self, name: str) -> None:
        body = self._file(name)
        if body is None:
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        self.server.stopping.wait(STALL_LIMIT_SECONDS)

    def _route_trickle(self, name: str) -> None:
        body = self._file(name)
        if body is None:
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self._write_slowly(body)

    def _route_slowheaders(self, name: str) -> None:
        body = self._file(name)
        if body is None:
            return
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        if self._write_slowly(f"Content-Type: video/mp4\r\nContent-Length: {len(body)}\r\n\r\n".encode()):
            self.wfile.write(body)

    def _write_slowly(self, data: bytes) -> bool:
        """Send ``data`` one byte a second; False if the server stopped first."""
        for byte in data:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            if self.server.stopping.wait(1.0):
                return False
        return True

    def _route_redirect(self, target: str) -> None:
        self.send_response(302)
        self.send_header("Location", unquote(target))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _route_robots(self, rest: str) -> None:
        tags, _, name = rest.partition("/")
        body = self._file(name)
        if body is None:
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Robots-Tag", unquote(tags))
        self.end_headers()
        self.wfile.write(body)

    def _route_reset(self, name: str) -> None:
        body = self._file(name)
        if body is None:
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        # SO_LINGER 0 turns close() into a TCP reset, as a crashing server would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _route_truncated(self, name: str) -> None:
        body = self._file(name)
        if body is not None:
            self._send(200, body[: len(body) // 3])

    def _route_empty(self, name: str) -> None:
        self._send(200, b"")

    def _route_page(self, name: str) -> None:
        self._send(200, b"<!doctype html><html><body><p>not a video</p></body></html>", "text/html")

    def _route_embed(self, name: str) -> None:
        page = (
            "<!doctype html><html><head><title>Embedded video</title></head><body>"
            f'<video controls><source src="/files/{name}" type="video/mp4"></video></body></html>'
        )
        self._send(200, page.encode(), "text/html")

    def _route_jsonld(self, rest: str) -> None:
        seconds, _, name = rest.partition("/")
        video = {
            "@context": "https://schema.org",
            "@type": "VideoObject",
            "name": name,
            "contentUrl": f"http://{self.headers['Host']}/files/{name}",
            "duration": f"PT{int(seconds)}S",
        }
        page = (
            "<!doctype html><html><head><title>A video</title>"
            f'<script type="application/ld+json">{json.dumps(video)}</script></head><body></body></html>'
        )
        self._send(200, page.encode(), "text/html")

    def _route_bigpage(self, mib: str) -> None:
        filler = b"<p>" + b"x" * 1020 + b"</p>"
        body = b"<!doctype html><html><body>" + filler * (1024 * int(mib)) + b"</body></html>"
        self._send(200, body, "text/html")

    def _route_subtitled(self, rest: str) -> None:
        mib, _, name = rest.partition("/")
        page = (
            "<!doctype html><html><head><title>Subtitled video</title></head><body><video controls>"
            f'<source src="/files/{name}" type="video/mp4">'
            f'<track kind="subtitles" srclang="en" src="/vtt/{mib}"></video></body></html>'
        )
        self._send(200, page.encode(), "text/html")

    def _route_vtt(self, mib: str) -> None:
        cue = b"00:00:00.000 --> 00:00:01.000\n" + b"w" * 990 + b"\n\n"
        self._send(200, b"WEBVTT\n\n" + cue * (1024 * int(mib)), "text/vtt")

    def _route_embedurl(self, rest: str) -> None:
        source = parse_qs(urlsplit(self.path).query).get("src", [""])[0]
        page = (
            "<!doctype html><html><head><title>Embedded video</title></head><body>"
            f'<video controls><source src="{html.escape(source)}" type="video/mp4"></video></body></html>'
        )
        self._send(200, page.encode(), "text/html")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root.resolve()
        self.hits: Counter[str] = Counter()  # by path and query
        self.started: Counter[str] = Counter()  # by route
        self.active: Counter[str] = Counter()  # by route: requests being answered now
        self.times: defaultdict[str, list[float]] = defaultdict(list)  # by path and query: monotonic
        self.host_active: Counter[str] = Counter()  # by Host header: requests being answered now
        self.host_most: Counter[str] = Counter()  # by Host header: most requests answered at once
        self.refused = 0  # 429s sent by /limited/
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.gates: dict[str, threading.Event] = {}

    def gate(self, name: str) -> threading.Event:
        """The event that ``/gate/{name}/...`` requests wait for."""
        with self.lock:
            return self.gates.setdefault(name, threading.Event())

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (timeouts, killed runs) are expected here; stay quiet."""


class MediaServer:
    """Serves ``root`` on 127.0.0.1 at a free port; use as a context manager."""

    def __init__(self, root: Path) -> None:
        self._server = _Server(root)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def embed_url(self, source: str) -> str:
        """URL of a page whose ``<video>`` plays ``source`` (for yt-dlp)."""
        return f"{self.base_url}/embedurl?src={quote(source, safe='')}"

    def url(self, route: str, name: str) -> str:
        """URL of ``name`` through ``route`` (``files``, ``status/404``, ``flaky/2``...)."""
        return f"{self.base_url}/{route}/{name}"

    def hits(self, url: str) -> int:
        """How many times ``url`` (path and query) was requested."""
        path = url.removeprefix(self.base_url)
        with self._server.lock:
            return self._server.hits[path]

    def started(self, route: str) -> int:
        """How many requests of ``route`` (``delay``, ``files``...) were received so far."""
        with self._server.lock:
            return self._server.started[route]

    def active(self, route: str) -> int:
        """How many requests of ``route`` are being answered right now."""
        with self._server.lock:
            return self._server.active[route]

    def open_gate(self, gate: str) -> None:
        """Let every request of ``/gate/{gate}/...``, waiting or to come, through."""
        self._server.gate(gate).set()

    def times(self, url: str) -> list[float]:
        """When (``time.monotonic()``) each request of ``url`` (path and query) arrived."""
        path = url.removeprefix(self.base_url)
        with self._server.lock:
            return list(self._server.times[path])

    def most_concurrent(self) -> dict[str, int]:
        """``Host`` header -> the most requests with it answered at once."""
        with self._server.lock:
            return dict(self._server.host_most)

    @property
    def refused(self) -> int:
        """How many 429s ``/limited/`` sent."""
        return self._server.refused

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        with self._server.lock:
            gates = list(self._server.gates.values())
        for event in gates:
            event.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
