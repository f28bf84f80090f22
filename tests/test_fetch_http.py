"""The direct fetcher's HTTP contract (``requests``', as in video2dataset 1.3.0): proxies from the job
and the environment, credentials in the url across redirects, redirect limits; against a real
server and a real forwarding proxy on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

import pytest
from requests.models import DEFAULT_REDIRECT_LIMIT as MAX_REDIRECTS

from tests.helpers import serving
from tests.proxy_server import ForwardingProxy
from v2d_core.config import ReadingConfig, YtArgs
from v2d_core.errors import HTTPStatusError, RefusedUrlError, UnsupportedUrlError
from v2d_core.fetch import FetchResult, make_fetcher
from v2d_core.testing.server import BASIC_AUTH, MediaServer

VIDEO = "video_0000.mp4"
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def fetch(url: str, workdir: Path, **reading: object) -> FetchResult:
    options: dict[str, object] = {"timeout": 2.0, "retries": 0, **reading}
    return make_fetcher(ReadingConfig(**options), {"video": "mp4"}).fetch(url, workdir)  # type: ignore[arg-type]


def fresh(server: MediaServer, route: str = "files", name: str = VIDEO) -> str:
    """A url of ``name`` no other test asked for (the server counts hits per url)."""
    return server.url(route, f"{name}?t={uuid.uuid4().hex}")


def redirect(server: MediaServer, target: str) -> str:
    return server.url("redirect", quote(target, safe=""))


def with_login(url: str) -> str:
    user, password = BASIC_AUTH
    return url.replace("://", f"://{quote(user, safe='')}:{quote(password, safe='')}@", 1)


@pytest.fixture
def no_environment_proxies(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_the_shard_proxy_carries_direct_files_with_its_credentials(
    media_server: MediaServer, tmp_path: Path, no_environment_proxies: pytest.MonkeyPatch
) -> None:
    url = fresh(media_server)
    with ForwardingProxy(credentials=("proxyuser", "proxy-secret")) as proxy:
        result = fetch(url, tmp_path, yt_args=YtArgs(proxy=proxy.url))
        assert proxy.urls() == [url]
    assert result.bytes_downloaded > 0


def test_environment_proxies_are_used_unless_no_proxy_names_the_host(
    media_server: MediaServer, tmp_path: Path, no_environment_proxies: pytest.MonkeyPatch
) -> None:
    monkeypatch = no_environment_proxies
    through, direct = fresh(media_server), fresh(media_server)
    with ForwardingProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        fetch(through, tmp_path)
        for no_proxy in ("127.0.0.1", "127.0.0.0/8"):
            monkeypatch.setenv("NO_PROXY", f"example.com, {no_proxy}")
            fetch(direct, tmp_path)
        assert proxy.urls() == [through]
    assert media_server.hits(direct) == 2


def test_one_shard_s_fetcher_routes_each_host_by_the_environment_every_time(
    media_server: MediaServer, tmp_path: Path, no_environment_proxies: pytest.MonkeyPatch
) -> None:
    """The environment's proxy settings are looked up once per host (not per request): each host
    still gets its own answer, on its first fetch and on every later one."""
    fetcher = make_fetcher(ReadingConfig(timeout=2.0, retries=0), {"video": "mp4"})
    through = [fresh(media_server) for _ in range(2)]
    direct = [url.replace("127.0.0.1", "localhost") for url in (fresh(media_server), fresh(media_server))]
    with ForwardingProxy() as proxy:
        no_environment_proxies.setenv("HTTP_PROXY", proxy.url)
        no_environment_proxies.setenv("NO_PROXY", "localhost")
        for pair in zip(through, direct, strict=True):
            for url in pair:
                assert fetcher.fetch(url, tmp_path).bytes_downloaded > 0
        assert proxy.urls() == through
    assert [media_server.hits(url.replace("localhost", "127.0.0.1")) for url in direct] == [1, 1]


def test_through_a_proxy_the_direct_target_is_still_checked(
    media_server: MediaServer, tmp_path: Path, no_environment_proxies: pytest.MonkeyPatch
) -> None:
    with ForwardingProxy() as proxy:
        no_environment_proxies.setenv("http_proxy", proxy.url)
        with pytest.raises(RefusedUrlError, match=r"127\.0\.0\.1 is in 127\.0\.0\.0/8 \(loopback\)"):
            fetch(fresh(media_server), tmp_path, allow_private_networks=False)
        assert proxy.urls() == []


def test_url_credentials_follow_a_redirect_on_the_same_host_only(
    media_server: MediaServer, tmp_path: Path
) -> None:
    same_host = media_server.url("signed/0", VIDEO)  # the redirect's path ends in .mp4: a direct file
    fetch(with_login(redirect(media_server, same_host)), tmp_path)
    other_host = same_host.replace("127.0.0.1", "localhost")
    with pytest.raises(HTTPStatusError, match="HTTP 403 Forbidden") as caught:
        fetch(with_login(redirect(media_server, other_host)), tmp_path)
    assert caught.value.status_code == 403


class _LoopHandler(BaseHTTPRequestHandler):
    """Redirects every request to itself."""

    protocol_version = "HTTP/1.1"
    hits = 0

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        type(self).hits += 1
        self.send_response(302)
        self.send_header("Location", self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def loop_url() -> Iterator[str]:
    with serving(_LoopHandler) as base:
        yield f"{base}/loop.mp4"


def test_a_redirect_loop_fails_after_the_redirect_limit(loop_url: str, tmp_path: Path) -> None:
    _LoopHandler.hits = 0
    with pytest.raises(HTTPStatusError, match="too many redirects") as caught:
        fetch(loop_url, tmp_path)
    assert caught.value.status_code == 302
    assert _LoopHandler.hits == MAX_REDIRECTS + 1


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("ftp://127.0.0.1/video.mp4", "ftp://127.0.0.1/video.mp4"),
        ("http://127.0.0.1:99999/video.mp4", "Port out of range"),
    ],
)
def test_a_redirect_to_an_unfetchable_url_is_unsupported(
    media_server: MediaServer, tmp_path: Path, location: str, message: str
) -> None:
    with pytest.raises(UnsupportedUrlError, match=message):
        fetch(redirect(media_server, location), tmp_path)
