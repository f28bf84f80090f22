"""Fetchers: a url in, local media files out (or a :class:`~v2d_core.errors.FetchError`).

:func:`make_fetcher` returns the one fetcher a shard uses. It routes each url:

- not ``http``/``https`` (``file:``, ``ftp:``, ``data:``, no scheme, empty) ->
  :class:`~v2d_core.errors.UnsupportedUrlError`;
- a path ending in a direct media extension (video2dataset's list: mp4 webm mov avi
  mkv mp3 wav m4a; the query string does not count) -> :class:`HttpFetcher`;
- anything else -> :class:`YtDlpFetcher`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from v2d_core.config import ReadingConfig
from v2d_core.errors import ConfigError, UnsupportedUrlError
from v2d_core.fetch.base import Fetcher, FetchResult

if TYPE_CHECKING:
    from v2d_core.fetch.http import HttpFetcher, direct_media_extension
    from v2d_core.fetch.ytdlp import YtDlpFetcher

# imported on first use: a run that fetches nothing (a later stage) never loads requests or PyAV
_HOMES = {
    "HttpFetcher": "v2d_core.fetch.http",
    "direct_media_extension": "v2d_core.fetch.http",
    "YtDlpFetcher": "v2d_core.fetch.ytdlp",
}

MODALITIES = ("video", "audio")


def make_fetcher(reading: ReadingConfig, encode_formats: Mapping[str, str], shard_id: int = 0) -> Fetcher:
    """The fetcher of shard ``shard_id`` (its proxy); results hold the modalities of ``encode_formats``."""
    if not any(kind in encode_formats for kind in MODALITIES):
        raise ConfigError(f"encode_formats {dict(encode_formats)!r} asks for neither video nor audio")
    from v2d_core.fetch.http import HttpFetcher, direct_media_extension
    from v2d_core.fetch.ytdlp import YtDlpFetcher

    direct = HttpFetcher(reading, encode_formats, shard_id)
    return _Router(direct_media_extension, direct, YtDlpFetcher(reading, encode_formats, shard_id))


def check_url(url: object) -> str:
    """``url`` stripped, if it is an http(s) url with a host; else :class:`UnsupportedUrlError`."""
    if not isinstance(url, str) or not url.strip():
        raise UnsupportedUrlError(f"no url to fetch (got {url!r})")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise UnsupportedUrlError(f"unsupported url {url!r}: only http:// and https:// urls are fetched")
    return url


class _Router(Fetcher):
    """Direct media files over HTTP, everything else through yt-dlp."""

    def __init__(self, is_direct: Callable[[str], object], direct: Fetcher, pages: Fetcher) -> None:
        self._is_direct = is_direct
        self._direct = direct
        self._pages = pages

    def fetch(self, url: str, workdir: Path) -> FetchResult:
        url = check_url(url)
        fetcher = self._direct if self._is_direct(url) else self._pages
        return fetcher.fetch(url, workdir)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'v2d_core.fetch' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


__all__ = [
    "FetchResult",
    "Fetcher",
    "HttpFetcher",
    "YtDlpFetcher",
    "check_url",
    "direct_media_extension",
    "make_fetcher",
]
