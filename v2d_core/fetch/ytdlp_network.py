"""yt-dlp behind v2d's guards, through yt-dlp's supported extension points.

- Requests: :class:`GuardedYoutubeDL` builds its request director with one handler, yt-dlp's
  requests handler whose adapter is a :class:`~v2d_core.fetch.netguard.GuardedAdapter`. Every
  page, api call, media file, fragment and redirect goes through the address guard and the
  fetch's deadline; nothing else (no urllib, websockets or curl_cffi handler, no ``file:``).
- Live streams are refused: they never finish, and yt-dlp records them with an ffmpeg
  process that no deadline reaches.
- Programs: yt-dlp hands some streams to ffmpeg or rtmpdump (rtmp, HLS features its native
  downloader lacks, sections), which connect by themselves. With the guard on, native
  downloaders are forced and a stream that would still go to a program is refused; with it
  off, that ffmpeg may use network protocols only (never ``file:``), with ``reading.timeout``
  as its read timeout.
- ffmpeg post-processors (merging, fixups) read local files with
  :mod:`v2d_core.media_input`'s whitelists, as every other ffmpeg v2d runs.
- Secrets of the yt-dlp options (cookie values, proxy and account passwords) are remembered
  by :mod:`v2d_core.redact`, so no message or log line v2d records shows them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import urllib3.util.retry
import yt_dlp
import yt_dlp.postprocessor
from yt_dlp.downloader import get_suitable_downloader
from yt_dlp.downloader.external import ExternalFD
from yt_dlp.downloader.rtmp import RtmpFD
from yt_dlp.networking._requests import RequestsHTTPAdapter, RequestsResponseAdapter, RequestsRH
from yt_dlp.networking.exceptions import TransportError
from yt_dlp.postprocessor.ffmpeg import FFmpegPostProcessor

from v2d_core.errors import FetchError, FetchTimeoutError, RefusedUrlError, TooLargeError, UnsupportedUrlError
from v2d_core.fetch.netguard import AddressPolicy, FetchGuard, GuardedAdapter
from v2d_core.media_input import input_args

NETWORK_PROTOCOLS = "http,https,tcp,tls,crypto"
FFMPEG_POSTPROCESSORS = sorted(
    name.removesuffix("PP").lower()
    for name, kind in vars(yt_dlp.postprocessor).items()
    if isinstance(kind, type) and issubclass(kind, FFmpegPostProcessor) and name.endswith("PP")
)


@dataclass(slots=True)
class ByteLimit:
    """The most bytes one response yt-dlp reads may have: ``max_file_size``, or lower while a
    subtitle file is read."""

    limit: int
    what: str = "max_file_size"

    @contextlib.contextmanager
    def lowered(self, limit: int, what: str) -> Iterator[None]:
        saved = self.limit, self.what
        self.limit, self.what = min(limit, self.limit), what
        try:
            yield
        finally:
            self.limit, self.what = saved


class _BoundedResponse(RequestsResponseAdapter):
    """A response whose reading stops at the fetch's deadline and at its byte limit: yt-dlp would
    otherwise read a page or a subtitle file of any size, and retry past the deadline."""

    def __init__(self, response: RequestsResponseAdapter, guard: FetchGuard, limit: ByteLimit) -> None:
        super().__init__(response._requests_response)
        self._wrapped = response  # kept alive: collecting it would close the connection under us
        self._guard, self._limit, self._max, self._read = guard, limit.what, limit.limit, 0

    def _real_read(self, amt: int | None = None) -> bytes:
        if amt is None:
            return b"".join(iter(functools.partial(self._real_read, 1 << 20), b""))
        if self._guard.expired:
            raise FetchTimeoutError(f"fetch_deadline passed while reading {self.url}")
        data = super()._real_read(min(amt, self._max + 1 - self._read))
        self._read += len(data)
        if self._read > self._max:
            self.close()
            raise TooLargeError(f"{self.url} is over {self._limit} ({self._max} bytes)")
        return data


class _Adapter(GuardedAdapter, RequestsHTTPAdapter):
    """yt-dlp's requests adapter (its TLS context, source address) behind a fetch guard."""


class _GuardedRequestsRH(RequestsRH):
    """yt-dlp's requests handler with a guarded adapter; v2d's errors become transport errors.

    It takes every url and fails the non-http ones itself: yt-dlp then treats a ``file:`` or
    ``ftp:`` fragment like any unreachable one (a "no handler" error would leave the fragment
    file open).
    """

    _SUPPORTED_URL_SCHEMES = None

    def __init__(self, *, guard: FetchGuard, limit: ByteLimit, **kwargs: Any) -> None:
        self._guard, self._limit = guard, limit
        super().__init__(**kwargs)

    def _create_instance(self, cookiejar: Any, legacy_ssl_support: bool | None = None) -> Any:
        session = super()._create_instance(cookiejar=cookiejar, legacy_ssl_support=legacy_ssl_support)
        adapter = _Adapter(
            guard=self._guard,
            ssl_context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support),
            source_address=self.source_address,
            max_retries=urllib3.util.retry.Retry(False),
        )
        for prefix in ("https://", "http://"):
            session.adapters[prefix].close()
            session.mount(prefix, adapter)
        return session

    def _send(self, request: Any) -> Any:
        scheme = urlsplit(request.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise TransportError(f"refused {request.url}: only http:// and https:// urls are fetched")
        try:
            response = super()._send(request)
        except FetchError as error:
            if self._guard.expired:  # not a transport error: yt-dlp would retry past the deadline
                raise
            raise TransportError(str(error), cause=error) from error  # yt-dlp retries; the cause is kept
        return _BoundedResponse(response, self._guard, self._limit)


class GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """A ``YoutubeDL`` whose every connection goes through ``guard``."""

    def __init__(self, params: Mapping[str, Any], *, guard: FetchGuard, limit: ByteLimit) -> None:
        self._guard, self.byte_limit = guard, limit
        super().__init__(harden(params, guard.policy, float(params.get("socket_timeout") or 60)))

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        handler = functools.partial(_GuardedRequestsRH, guard=self._guard, limit=self.byte_limit)
        return super().build_request_director([handler], preferences)

    def dl(self, name: str, info: dict[str, Any], subtitle: bool = False, test: bool = False) -> Any:
        if info.get("is_live"):
            page = info.get("webpage_url") or info.get("url")
            raise UnsupportedUrlError(f"{page} is a live stream; only finished videos are downloaded")
        if not self._guard.policy.allow_private:
            downloader = get_suitable_downloader(info, self.params, to_stdout=name == "-")
            if downloader is not None and issubclass(downloader, ExternalFD | RtmpFD):
                raise RefusedUrlError(
                    f"yt-dlp would hand this {info.get('protocol')} stream to its {downloader.FD_NAME} "
                    "downloader, a program whose connections the address guard cannot check; "
                    "set reading.allow_private_networks to allow it"
                )
        return super().dl(name, info, subtitle=subtitle, test=test)


def harden(params: Mapping[str, Any], policy: AddressPolicy, read_timeout: float) -> dict[str, Any]:
    """``params`` with v2d's rules on top of the user's: no ``file:`` urls, native downloaders
    when the guard is on, whitelisted ffmpeg inputs with a read timeout."""
    hardened = dict(params)
    hardened["enable_file_urls"] = False
    if not policy.allow_private:
        hardened["external_downloader"] = {"default": "native"}
    # With the guard on, an ffmpeg download (HLS's fallback) may open no network protocol at all.
    protocols = NETWORK_PROTOCOLS if policy.allow_private else "crypto"
    limits = ["-protocol_whitelist", protocols, "-rw_timeout", str(int(read_timeout * 1e6))]
    hardened["external_downloader_args"] = _prepend(
        params.get("external_downloader_args"), {"ffmpeg_i": limits}
    )
    hardened["postprocessor_args"] = _prepend(
        params.get("postprocessor_args"), {f"{pp}+ffmpeg_i": input_args() for pp in FFMPEG_POSTPROCESSORS}
    )
    return hardened


def _prepend(user: Any, ours: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """yt-dlp's per-program argument mapping with ``ours`` before the user's arguments."""
    merged = dict(user) if isinstance(user, Mapping) else ({"default": list(user)} if user else {})
    for key, args in ours.items():
        merged[key] = [*args, *merged.get(key, [])]
    return merged
