"""Fetchers: a url in, local media files out (or a :class:`~v2d_core.errors.FetchError`).

:func:`make_fetcher` returns the one fetcher a shard uses. It routes each url:

- not ``http``/``https`` (``file:``, ``ftp:``, ``data:``, no scheme, empty) ->
  :class:`~v2d_core.errors.UnsupportedUrlError`;
- a path ending in a direct media extension (video2dataset's list: mp4 webm mov avi
  mkv mp3 wav m4a; the query string does not count) -> :class:`HttpFetcher`;
- anything else -> :class:`YtDlpFetcher`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from v2d_core.config import ReadingConfig
from v2d_core.errors import ConfigError, UnsupportedUrlError
from v2d_core.fetch.base import Fetcher, FetchResult
from v2d_core.fetch.http import HttpFetcher, direct_media_extension
from v2d_core.fetch.ytdlp import YtDlpFetcher

MODALITIES = ("video", "audio")


def make_fetcher(reading: ReadingConfig, encode_formats: Mapping[str, str], shard_id: int = 0) -> Fetcher:
    """The fetcher of shard ``shard_id`` (its proxy); results hold the modalities of ``encode_formats``."""
    if not any(kind in encode_formats for kind in MODALITIES):
        raise ConfigError(f"encode_formats {dict(encode_formats)!r} asks for neither video nor audio")
    return _Router(
        HttpFetcher(reading, encode_formats, shard_id), YtDlpFetcher(reading, encode_formats, shard_id)
    )


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

    def __init__(self, direct: Fetcher, pages: Fetcher) -> None:
        self._direct = direct
        self._pages = pages

    def fetch(self, url: str, workdir: Path) -> FetchResult:
        url = check_url(url)
        fetcher = self._direct if direct_media_extension(url) else self._pages
        return fetcher.fetch(url, workdir)


__all__ = [
    "FetchResult",
    "Fetcher",
    "HttpFetcher",
    "YtDlpFetcher",
    "check_url",
    "direct_media_extension",
    "make_fetcher",
]
