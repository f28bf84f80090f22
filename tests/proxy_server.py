"""A forwarding HTTP proxy on 127.0.0.1 that records every url asked through it.

It answers absolute-form ``GET`` requests (``GET http://host/path``, what clients send to an
http proxy) by fetching the url itself and relaying status, headers and body. With
``credentials`` it wants ``Proxy-Authorization: Basic ...`` for them and answers 407 otherwise.
"""

from __future__ import annotations

import base64
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer"}
    | {"transfer-encoding"}
)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname:
            self._answer(400, [], b"absolute http urls only")
            return
        if self.server.authorization and self.headers.get("Proxy-Authorization") != self.server.authorization:
            self._answer(407, [("Proxy-Authenticate", 'Basic realm="test"')], b"")
            return
        with self.server.lock:
            self.server.urls.append(self.path)
        upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
        try:
            headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            upstream.request("GET", target or "/", headers=headers)
            response = upstream.getresponse()
            body = response.read()
            kept = [(key, value) for key, value in response.getheaders() if key.lower() not in HOP_BY_HOP]
            self._answer(response.status, [(k, v) for k, v in kept if k.lower() != "content-length"], body)
        finally:
            upstream.close()

    def _answer(self, code: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(code)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, authorization: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.authorization = authorization
        self.urls: list[str] = []
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up are expected here; stay quiet."""


class ForwardingProxy:
    """A recording http proxy on 127.0.0.1 at a free port; use as a context manager."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        token = base64.b64encode(":".join(credentials).encode()).decode() if credentials else None
        self._credentials = credentials
        self._server = _ProxyServer(f"Basic {token}" if token else None)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's url, with its credentials when it has some."""
        login = f"{self._credentials[0]}:{self._credentials[1]}@" if self._credentials else ""
        return f"http://{login}127.0.0.1:{self._server.server_address[1]}"

    def urls(self) -> list[str]:
        """Every url forwarded so far, in order."""
        with self._server.lock:
            return list(self._server.urls)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
