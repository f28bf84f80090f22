"""Direct media files over HTTP(S): streamed to disk, bounded in time and size, retried when transient.

Limits, per attempt:

- connect: ``reading.connect_timeout``; each read: ``reading.timeout``;
- the whole attempt, headers and body: ``BODY_DEADLINE_FACTOR * reading.timeout`` seconds
  of wall clock (240 s with the default 60 s timeout), and all attempts together
  ``reading.fetch_deadline``: at the deadline the attempt's sockets are shut down (see
  :class:`~v2d_core.fetch.netguard.FetchGuard`), so a server trickling a byte now and then
  cannot hold a worker thread;
- size: ``reading.max_file_size``, by Content-Length up front and while streaming;
- addresses: the address guard of :mod:`v2d_core.fetch.netguard`, on every redirect;
- opt-out: an ``X-Robots-Tag`` directive in ``reading.disallowed_header_directives``.

Transient failures (5xx, 429, timeouts, connection lost mid-body) are retried
``reading.retries`` times, after the server's ``Retry-After`` when a 429 or 503 gives one
(every thread then holds off that host), else with exponential backoff
``retry_backoff * 2**attempt``; anything else (404, too large, not media, refused) fails at
once. Each attempt holds one of its host's slots (:mod:`v2d_core.fetch.politeness`) and uses
its own ``requests.Session`` (through the shard's proxy, if any), so threads share no state
and no pooled socket outlives the call.
"""

from __future__ import annotations

import http.client
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import requests
import urllib3.exceptions

from v2d_core.config import ReadingConfig
from v2d_core.errors import (
    ConnectionLostError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    NotMediaError,
    TooLargeError,
    UnsupportedUrlError,
)
from v2d_core.fetch.base import Fetcher, FetchResult
from v2d_core.fetch.environment import CachedEnvironmentSession, EnvironmentCache
from v2d_core.fetch.media_check import assemble_streams, held_streams
from v2d_core.fetch.netguard import AddressPolicy, FetchGuard, guarded_session
from v2d_core.fetch.optout import HEADER, check_opt_out
from v2d_core.fetch.politeness import Limits, hold_off, polite, retry_after

VIDEO_EXTENSIONS = ("mp4", "webm", "mov", "avi", "mkv")
AUDIO_EXTENSIONS = ("mp3", "wav", "m4a")
BODY_DEADLINE_FACTOR = 4
CHUNK_BYTES = 1024 * 1024
# A body up to this size is read into memory and, when it is a plain mp4 that no transform reads,
# handed to the shard's writer from there: written to disk once, not twice. At most
# 2 * thread_count bodies are in flight per shard, so this bounds the memory a shard holds.
MEMORY_BODY_BYTES = 32 * 1024 * 1024
HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRY_AFTER_STATUSES = (429, 503)


def direct_media_extension(url: str) -> str | None:
    """The media extension the url's path ends with (video2dataset's list), or None."""
    path = unquote(urlsplit(url).path).lower()
    return next((ext for ext in VIDEO_EXTENSIONS + AUDIO_EXTENSIONS if path.endswith(f".{ext}")), None)


class HttpFetcher(Fetcher):
    """Downloads a direct media url into ``workdir`` (through shard ``shard_id``'s proxy, if any);
    safe to call from many threads at once."""

    def __init__(self, reading: ReadingConfig, encode_formats: Mapping[str, str], shard_id: int = 0) -> None:
        self._reading = reading
        self._encode_formats = dict(encode_formats)
        self._policy = AddressPolicy.from_reading(reading)
        self._limits = Limits.from_reading(reading)
        proxy = reading.yt_args.proxy_for_shard(shard_id)
        self._proxies = {"http": proxy, "https": proxy} if proxy else {}
        self._environment: EnvironmentCache = {}

    def fetch(self, url: str, workdir: Path) -> FetchResult:
        """Download ``url``, check it is whole media, and return its requested streams."""
        target = workdir / f"{uuid.uuid4().hex}.{direct_media_extension(url) or 'bin'}"
        reading = self._reading
        try:
            body = self._download_with_retries(url, target)
            if body.data is not None:
                held = held_streams(body.data, self._encode_formats, reading.max_pixels, reading.max_duration)
                if held is not None:
                    return FetchResult(streams={}, bytes_downloaded=body.size, held=held)
                workdir.mkdir(exist_ok=True)
                target.write_bytes(body.data)
            streams = assemble_streams(
                [target],
                self._encode_formats,
                workdir,
                reading.timeout,
                reading.max_pixels,
                reading.max_duration,
            )
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return FetchResult(streams=streams, bytes_downloaded=body.size)

    def _download_with_retries(self, url: str, target: Path) -> _Body:
        """Attempts until success, a permanent failure, ``retries`` or ``fetch_deadline``."""
        deadline = time.monotonic() + self._reading.fetch_deadline
        attempt = 0
        while True:
            try:
                with polite(url, self._limits, deadline):
                    limit = BODY_DEADLINE_FACTOR * self._reading.timeout
                    remaining = deadline - time.monotonic()
                    if remaining < limit:  # the cut falls at the fetch's deadline
                        return self._attempt(url, target, remaining, self._reading.fetch_deadline)
                    return self._attempt(url, target, limit, limit)
            except FetchError as error:
                asked = error.retry_after if isinstance(error, HTTPStatusError) else None
                if asked is not None:  # the server asked every client to wait, not only this thread
                    hold_off(url, self._limits, asked)
                if not error.transient or attempt >= self._reading.retries:
                    raise
            pause = asked if asked is not None else self._reading.retry_backoff * 2**attempt
            if time.monotonic() + pause >= deadline:
                raise FetchTimeoutError(
                    f"{url} not fetched within fetch_deadline ({self._reading.fetch_deadline:g}s)"
                )
            time.sleep(pause)
            attempt += 1

    def _attempt(self, url: str, target: Path, seconds: float, shown: float) -> _Body:
        """One attempt, its sockets cut after ``seconds``: a cut attempt is a timeout, whatever it raised.

        ``shown`` is what the message names: the attempt's limit, or ``fetch_deadline`` when it cuts.
        """
        with (
            FetchGuard(self._policy, seconds) as guard,
            guarded_session(guard, CachedEnvironmentSession(self._environment)) as session,
        ):
            session.proxies.update(self._proxies)
            try:
                body = self._download_once(session, url, target)
            except FetchError:
                if guard.expired:
                    raise FetchTimeoutError(f"{url} not complete after {shown:.3g}s") from None
                raise
            if guard.expired:
                raise FetchTimeoutError(f"{url} not complete after {shown:.3g}s")
            return body

    def _download_once(self, session: requests.Session, url: str, target: Path) -> _Body:
        """One GET: a body of declared length up to ``MEMORY_BODY_BYTES`` is read into memory in
        one call; any other streams to ``target``."""
        timeout = (self._reading.connect_timeout, self._reading.timeout)
        try:
            response = session.get(url, stream=True, timeout=timeout)
        except requests.RequestException as error:
            raise _request_error(error, url) from None
        with response:
            _check_response(response, url, self._reading.max_file_size)
            check_opt_out(
                response.raw.headers.getlist(HEADER), self._reading.disallowed_header_directives, url
            )
            declared = _declared_length(response)
            if declared is not None and declared <= MEMORY_BODY_BYTES:
                data = _read_chunk(response.raw.read, url, declared)
                _check_length(response, len(data), url)
                return _Body(len(data), data)
            target.parent.mkdir(exist_ok=True)
            with target.open("wb") as sink:
                return _Body(self._stream_body(response, sink, url))

    def _stream_body(self, response: requests.Response, sink: BinaryIO, url: str) -> int:
        """Copy the body to ``sink`` chunk by chunk; return the number of bytes received."""
        limit = self._reading.max_file_size
        received = 0
        while chunk := _read_chunk(response.raw.read, url, CHUNK_BYTES):
            received += len(chunk)
            if received > limit:
                raise TooLargeError(f"body of {url} is over max_file_size ({limit} bytes)")
            sink.write(chunk)
        _check_length(response, received, url)
        return received


@dataclass(frozen=True, slots=True)
class _Body:
    """A received body: ``size`` bytes, held in ``data``, or (``data`` None) in the target file."""

    size: int
    data: bytes | None = None


def _read_chunk(read: Callable[..., bytes], url: str, amount: int) -> bytes:
    """Up to ``amount`` bytes of the raw body (fewer only at its end), urllib3's errors mapped onto ours.

    ``read``, not ``read1``: one call per megabyte, where ``read1`` returned socket-sized pieces
    at a cost of several CPU milliseconds per video.
    """
    try:
        return read(amount, decode_content=True)
    except (urllib3.exceptions.TimeoutError, TimeoutError):
        raise FetchTimeoutError(f"read timed out for {url}") from None
    except urllib3.exceptions.DecodeError as error:
        raise NotMediaError(f"cannot decode the body of {url}: {error}") from None
    except (urllib3.exceptions.ProtocolError, http.client.HTTPException, OSError) as error:
        raise ConnectionLostError(f"connection lost while reading {url}: {error}") from None


def _check_response(response: requests.Response, url: str, limit: int) -> None:
    """Fail before reading the body: error status, HTML page, declared size over the limit."""
    if response.status_code >= 400:
        reason = f" {response.reason}" if response.reason else ""
        asked = None
        if response.status_code in RETRY_AFTER_STATUSES:
            asked = retry_after(response.headers.get("Retry-After"))
        raise HTTPStatusError(f"HTTP {response.status_code}{reason} for {url}", response.status_code, asked)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type in HTML_TYPES:
        raise NotMediaError(f"{url} is a web page ({content_type}), not a media file")
    declared = _declared_length(response)
    if declared is not None and declared > limit:
        raise TooLargeError(f"{url} is {declared} bytes, over max_file_size ({limit} bytes)")


def _declared_length(response: requests.Response) -> int | None:
    """Content-Length as an int when present, valid, and the body is not content-encoded."""
    value = response.headers.get("Content-Length", "")
    if not value.strip().isdigit() or response.headers.get("Content-Encoding"):
        return None
    return int(value)


def _check_length(response: requests.Response, received: int, url: str) -> None:
    declared = _declared_length(response)
    if declared is not None and received < declared:
        raise ConnectionLostError(f"short body for {url}: got {received} of {declared} bytes")
    if received == 0:
        raise NotMediaError(f"empty body from {url}")


def _request_error(error: requests.RequestException, url: str) -> FetchError:
    """Map an error raised by ``Session.get`` (before the body) onto the v2d hierarchy."""
    if isinstance(error, requests.Timeout):
        return FetchTimeoutError(f"timed out connecting to or waiting for {url}")
    if isinstance(error, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema):
        return UnsupportedUrlError(f"cannot fetch {url}: {error}")
    if isinstance(error, requests.TooManyRedirects):
        status = error.response.status_code if error.response is not None else 310
        return HTTPStatusError(f"too many redirects for {url}", status)
    if isinstance(error, requests.exceptions.ContentDecodingError):
        return NotMediaError(f"cannot decode the body of {url}: {error}")
    return ConnectionLostError(f"connection to {url} failed: {error}")
