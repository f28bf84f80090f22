"""Pages yt-dlp understands (YouTube, Vimeo, any page with a ``<video>``): one ``YoutubeDL`` per url.

Each fetch gets its own folder under ``workdir`` (yt-dlp's ``paths`` home and temp,
no cache dir), so nothing is written elsewhere and threads never share a file name.
One ``extract_info(download=True)`` call both downloads and gives the metadata.
Formats follow video2dataset 1.3.0: the smallest mp4 at least ``download_size`` high
for video, an m4a at least ``download_audio_rate`` for audio; when audio is asked but
no audio-only format exists, the audio track is extracted from the video.
Limits: ``socket_timeout = reading.timeout`` per read, ``reading.max_file_size`` (a
progress hook), ``reading.max_duration`` (yt-dlp's ``match_filter``, before downloading)
and ``reading.fetch_deadline`` for the whole call: every connection goes through a
:class:`~v2d_core.fetch.netguard.FetchGuard` (address guard and deadline, see
:mod:`v2d_core.fetch.ytdlp_network`), which cuts them when the deadline passes.
Every ``YoutubeDL`` gets the JavaScript runtime of :mod:`v2d_core.fetch.ytdlp_stack`
(``js_runtimes``) and the ffmpeg of :mod:`v2d_core.ffmpeg_binary`.

Politeness: a fetch holds one slot of its page's host (:mod:`v2d_core.fetch.politeness`),
``reading.per_host_rate`` sets yt-dlp's ``sleep_interval_requests``, and a 429/503 with
``Retry-After`` that ends a fetch holds its host off for every thread. The shard's proxy, the
cookies (``cookiefile``, ``cookies_from_browser``) and ``extractor_args`` (player clients, PO
tokens) are passed to every ``YoutubeDL``; plugins installed in the environment load as usual.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from v2d_core.config import ReadingConfig, YtArgs
from v2d_core.errors import (
    ConfigError,
    FetchTimeoutError,
    RefusedUrlError,
    TooLargeError,
    TooLongError,
    YtDlpError,
)
from v2d_core.fetch.base import Fetcher, FetchResult
from v2d_core.fetch.media_check import assemble_streams
from v2d_core.fetch.netguard import AddressPolicy, FetchGuard
from v2d_core.fetch.politeness import Limits, hold_off, polite, retry_after
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.redact import redact_mapping, redact_text, remember, secret_values

if TYPE_CHECKING:
    from v2d_core.fetch.ytdlp_network import GuardedYoutubeDL

LOGGER = logging.getLogger(__name__)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
DROPPED_INFO_KEYS = (
    "formats",
    "thumbnails",
    "subtitles",
    "automatic_captions",
    "requested_formats",
)
SECRET_INFO_KEYS = frozenset({"cookies", "http_headers"})  # yt-dlp puts cookie values in "cookies"
NOT_YTDLP_KEYS = frozenset({"get_info"})
OUTPUT_TEMPLATE = "media.f%(format_id)s.%(ext)s"
BROWSER_SPEC = re.compile(
    r"(?P<browser>[^+:]+)(?:\+(?P<keyring>[^:]+))?(?::(?!:)(?P<profile>.*?))?(?:::(?P<container>.+))?"
)


def video_selector(download_size: int) -> str:
    """video2dataset's video format: smallest mp4 >= ``download_size`` high, then any single file."""
    size = download_size
    return f"wv*[height>={size}][ext=mp4]/w[height>={size}][ext=mp4]/bv/b[ext=mp4]/b"


def audio_selector(download_audio_rate: int) -> str:
    """video2dataset's audio format: smallest m4a >= ``download_audio_rate`` Hz, else the best m4a."""
    if download_audio_rate > 0:
        return f"wa[asr>={download_audio_rate}][ext=m4a]/ba[ext=m4a]"
    return "ba[ext=m4a]"


def format_selector(yt_args: YtArgs, encode_formats: Mapping[str, str]) -> str:
    """The yt-dlp ``format`` for the requested modalities (``yt_args.format`` wins when set)."""
    if yt_args.format:
        return yt_args.format
    video = video_selector(yt_args.download_size)
    audio = audio_selector(yt_args.download_audio_rate)
    if "video" in encode_formats and "audio" in encode_formats:
        return f"{video},{audio}"
    if "video" in encode_formats:
        return video
    return f"{audio}/b[ext=mp4]/b"


class YtDlpFetcher(Fetcher):
    """Downloads what yt-dlp finds at a page url (through shard ``shard_id``'s proxy, if any); safe to
    call from many threads."""

    def __init__(self, reading: ReadingConfig, encode_formats: Mapping[str, str], shard_id: int = 0) -> None:
        cookiefile = reading.yt_args.ytdl_options.get("cookiefile", reading.yt_args.cookiefile)
        if cookiefile is not None and not Path(cookiefile).is_file():
            raise ConfigError(f"reading.yt_args.cookiefile {cookiefile!r} is not a readable file")
        remember_secrets(reading.yt_args)
        self._reading = reading
        self._encode_formats = dict(encode_formats)
        self._metadata_args = dict(reading.yt_args.yt_metadata_args or {})
        self._policy = AddressPolicy.from_reading(reading)
        self._limits = Limits.from_reading(reading)
        self._proxy = reading.yt_args.proxy_for_shard(shard_id)
        spec = reading.yt_args.cookies_from_browser
        self._browser = browser_cookies(spec) if spec is not None else None

    def fetch(self, url: str, workdir: Path) -> FetchResult:
        """Download ``url`` with yt-dlp into a fresh folder under ``workdir``."""
        workdir.mkdir(exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="ytdlp-", dir=workdir))
        reading = self._reading
        try:
            info, metadata = self._download(url, folder)
            files = _downloaded_files(info)
            received = sum(path.stat().st_size for path in files)
            streams = assemble_streams(
                files, self._encode_formats, folder, reading.timeout, reading.max_pixels, reading.max_duration
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FetchResult(streams=streams, bytes_downloaded=received, metadata=metadata)

    def _download(self, url: str, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """One extract_info call under the fetch's guard: the downloaded video's info and our metadata."""
        import yt_dlp.utils  # yt-dlp loads with the first page url, never for direct files

        from v2d_core.fetch.ytdlp_network import ByteLimit, GuardedYoutubeDL

        deadline = self._reading.fetch_deadline
        late = f"yt-dlp did not finish {url} within fetch_deadline ({deadline:g}s)"
        end = time.monotonic() + deadline
        with (
            polite(url, self._limits, end),  # the wait for the host counts toward the deadline
            FetchGuard(self._policy, max(0.0, end - time.monotonic())) as guard,
        ):
            try:
                limit = ByteLimit(self._reading.max_file_size)
                with GuardedYoutubeDL(self.ytdl_params(folder), guard=guard, limit=limit) as ydl:
                    if self._browser is not None:  # the browser's cookies stay out of messages too
                        remember(cookie.value for cookie in ydl.cookiejar)
                    info = _single_entry(ydl.extract_info(url, download=True))
                    result = info, self._metadata(ydl, info)
            except yt_dlp.utils.YoutubeDLError as error:
                causes = _causes(error)
                _hold_off_when_asked(causes, self._limits)
                _close_responses(causes)
                message, transient = _clean_message(error), any(map(_is_transient, causes))
            else:
                if guard.expired:  # a cut connection can look like a finished body
                    raise FetchTimeoutError(late)
                return result
        # Raised outside the except block so that no context keeps yt-dlp's objects alive.
        if guard.expired:
            raise FetchTimeoutError(late)
        if guard.refusal is not None:
            raise RefusedUrlError(guard.refusal)
        raise YtDlpError(message, transient=transient)

    def ytdl_params(self, folder: Path) -> dict[str, Any]:
        """The options of the YoutubeDL that fetches into ``folder``."""
        from v2d_core.fetch.ytdlp_stack import js_runtimes  # reads yt-dlp's own modules

        yt_args = self._reading.yt_args
        params: dict[str, Any] = {
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _Logger(),
            "color": {"stdout": "no_color", "stderr": "no_color"},
            "format": format_selector(yt_args, self._encode_formats),
            "paths": {"home": str(folder), "temp": str(folder)},
            "outtmpl": {"default": OUTPUT_TEMPLATE, "subtitle": ""},
            "cachedir": False,
            "restrictfilenames": True,
            "noplaylist": True,
            "playlist_items": "1",
            "retries": yt_args.retries,
            "socket_timeout": self._reading.timeout,
            "progress_hooks": [functools.partial(_check_size, limit=self._reading.max_file_size)],
            "ffmpeg_location": ffmpeg_exe(),
            "js_runtimes": js_runtimes(),
        }
        if self._reading.max_duration is not None:
            params["match_filter"] = functools.partial(_check_duration, limit=self._reading.max_duration)
        rate = self._reading.per_host_rate
        optional = {
            "cookiefile": yt_args.cookiefile,
            "cookiesfrombrowser": self._browser,
            "proxy": self._proxy,
            "extractor_args": yt_args.extractor_args or None,
            "sleep_interval_requests": 1.0 / rate if rate else None,
        }
        params.update({key: value for key, value in optional.items() if value is not None})
        if self._metadata_args:
            params["subtitlesformat"] = "vtt"
            params.update({k: v for k, v in self._metadata_args.items() if k not in NOT_YTDLP_KEYS})
        params.update(yt_args.ytdl_options)
        if params.get("cookiefile"):
            # yt-dlp writes its cookie jar back on close: give it a private copy, not the shared file.
            params["cookiefile"] = str(shutil.copyfile(params["cookiefile"], folder / "cookies.txt"))
        return params

    def _metadata(self, ydl: GuardedYoutubeDL, info: dict[str, Any]) -> dict[str, Any]:
        """video2dataset's ``yt_meta_dict``: trimmed info and parsed subtitles, when asked for."""
        args = self._metadata_args
        if not args:
            return {}
        all_langs = args.get("writesubtitles") != "first"  # video2dataset: "first" stops at the first
        subtitles = (
            _subtitles(ydl, info, all_langs, self._reading.max_subtitle_size)
            if _wants_subtitles(args)
            else None
        )
        trimmed = trim_info(info) if args.get("get_info") else None
        return {"yt_meta_dict": {"info": trimmed, "subtitles": subtitles}}


def browser_cookies(spec: str) -> tuple[str, str | None, str | None, str | None]:
    """yt-dlp's ``cookiesfrombrowser`` from ``BROWSER[+KEYRING][:PROFILE][::CONTAINER]``; ConfigError
    naming the supported browsers and keyrings when it is not one."""
    import yt_dlp.cookies

    match = BROWSER_SPEC.fullmatch(spec.strip())
    if match is not None:
        browser = match["browser"].strip().lower()
        keyring = match["keyring"].strip().upper() if match["keyring"] else None
        if browser in yt_dlp.cookies.SUPPORTED_BROWSERS and keyring in (
            None,
            *yt_dlp.cookies.SUPPORTED_KEYRINGS,
        ):
            return browser, match["profile"] or None, keyring, match["container"] or None
    raise ConfigError(
        f"reading.yt_args.cookies_from_browser {spec!r} is not BROWSER[+KEYRING][:PROFILE][::CONTAINER] "
        f"with a browser of {', '.join(sorted(yt_dlp.cookies.SUPPORTED_BROWSERS))} and a keyring of "
        f"{', '.join(sorted(yt_dlp.cookies.SUPPORTED_KEYRINGS))}"
    )


class _Logger:
    """Sends yt-dlp's output to logging at debug level instead of the terminal."""

    def debug(self, message: str) -> None:
        LOGGER.debug("%s", redact_text(message))

    def info(self, message: str) -> None:
        LOGGER.debug("%s", redact_text(message))

    def warning(self, message: str) -> None:
        LOGGER.debug("%s", redact_text(message))

    def error(self, message: str) -> None:
        LOGGER.debug("%s", redact_text(message))


def _clean_message(error: BaseException) -> str:
    """yt-dlp's own message without terminal colour codes (its "ERROR: [extractor] ..." text kept)."""
    return ANSI_ESCAPE.sub("", str(error)).strip() or type(error).__name__


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and every exception it wraps (yt-dlp's ``exc_info`` and ``cause``, chained ones)."""
    pending: list[object] = [error]
    found: dict[int, BaseException] = {}
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in found:
            continue
        found[id(current)] = current
        exc_info = getattr(current, "exc_info", None)
        pending.append(exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None)
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return list(found.values())


def _hold_off_when_asked(causes: list[BaseException], limits: Limits) -> None:
    """A 429 or 503 with ``Retry-After`` that ended the fetch holds every thread off its host too."""
    import yt_dlp.networking.exceptions

    for cause in causes:
        if isinstance(cause, yt_dlp.networking.exceptions.HTTPError) and cause.status in (429, 503):
            asked = retry_after(cause.response.headers.get("Retry-After"))
            if asked is not None:
                hold_off(cause.response.url, limits, asked)


def _close_responses(causes: list[BaseException]) -> None:
    """Close HTTP responses a yt-dlp error holds (an unread 404 page keeps its socket open until GC)."""
    for cause in causes:
        close = getattr(getattr(cause, "response", None), "close", None)
        if callable(close):
            close()


def _is_transient(cause: BaseException) -> bool:
    """A network failure that may go away: a timeout or lost connection, an HTTP 5xx or 429."""
    import yt_dlp.networking.exceptions

    if isinstance(cause, yt_dlp.networking.exceptions.HTTPError):
        return cause.status >= 500 or cause.status == 429
    return isinstance(cause, yt_dlp.networking.exceptions.TransportError) and not isinstance(
        cause, yt_dlp.networking.exceptions.CertificateVerifyError | yt_dlp.networking.exceptions.ProxyError
    )


def _single_entry(info: dict[str, Any] | None) -> dict[str, Any]:
    """The video's info dict; for a playlist (several <video> on a page) its first entry."""
    while info is not None and info.get("_type") in ("playlist", "multi_video"):
        info = next((entry for entry in info.get("entries") or [] if entry), None)
    if info is None:
        raise YtDlpError("yt-dlp found no video at this url")
    return info


def _check_size(progress: Mapping[str, Any], *, limit: int) -> None:
    """yt-dlp progress hook: stop a download whose announced or received size is over ``limit``.

    Raised exceptions that are not yt-dlp's own pass through yt-dlp unchanged (its
    ``max_filesize`` would skip the file silently instead).
    """
    size = max(progress.get("total_bytes") or 0, progress.get("downloaded_bytes") or 0)
    if size > limit:
        raise TooLargeError(f"download is {size} bytes, over max_file_size ({limit} bytes)")


def _check_duration(info: Mapping[str, Any], *, incomplete: bool, limit: float) -> None:
    """yt-dlp match filter: fail a video whose announced duration is over ``limit``, before downloading."""
    duration = info.get("duration")
    if isinstance(duration, int | float) and duration > limit:
        raise TooLongError(f"video lasts {duration:g}s, over max_duration ({limit:g}s)")


def _downloaded_files(info: dict[str, Any]) -> list[Path]:
    """The media files yt-dlp wrote."""
    downloads = info.get("requested_downloads") or []
    files = [Path(item["filepath"]) for item in downloads if item.get("filepath")]
    files = [path for path in files if path.is_file()]
    if not files:
        raise YtDlpError("yt-dlp finished without writing a media file")
    return files


def trim_info(info: dict[str, Any]) -> dict[str, Any]:
    """yt-dlp's info dict made json-serializable, without formats, thumbnails, subtitles,
    headers and cookies, credentials in its strings masked."""
    import yt_dlp

    clean = yt_dlp.YoutubeDL.sanitize_info(dict(info), remove_private_keys=True)
    for key in DROPPED_INFO_KEYS:
        clean.pop(key, None)
    return redact_mapping(_without(clean, SECRET_INFO_KEYS))


def _without(value: Any, keys: frozenset[str]) -> Any:
    """``value`` with ``keys`` removed from every mapping nested in it."""
    if isinstance(value, dict):
        return {key: _without(item, keys) for key, item in value.items() if key not in keys}
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    return value


def _wants_subtitles(args: Mapping[str, Any]) -> bool:
    return bool(args.get("writesubtitles") or args.get("writeautomaticsub"))


Cue = dict[str, Any]


def _subtitles(
    ydl: GuardedYoutubeDL, info: dict[str, Any], all_langs: bool, max_size: int
) -> dict[str, list[Cue]]:
    """Requested subtitles, fetched through yt-dlp (its proxy and cookies) and parsed as WebVTT.

    Languages come in ``subtitleslangs`` order; only the first present one when
    ``writesubtitles`` is ``first``, else all (video2dataset's rule).
    """
    parsed: dict[str, list[Cue]] = {}
    for lang, sub in (info.get("requested_subtitles") or {}).items():
        text = sub.get("data")
        if text is None:
            with ydl.byte_limit.lowered(max_size, "max_subtitle_size"), ydl.urlopen(sub["url"]) as response:
                text = response.read().decode("utf-8", "replace")
        parsed[lang] = parse_webvtt(text)
        if not all_langs:
            break
    return parsed


TIMING = re.compile(r"^\s*((?:\d+:)?\d+:\d{2}[.,]\d{3})\s+-->\s+((?:\d+:)?\d+:\d{2}[.,]\d{3})")


def parse_webvtt(text: str) -> list[dict[str, Any]]:
    """Cues of a WebVTT (or SRT) text as ``{"start", "end", "lines"}``, repeated lines removed.

    Times are ``HH:MM:SS.mmm`` strings. As video2dataset does, cues with ``<c>`` word
    timing (YouTube's rolling auto-captions) are skipped, blank lines dropped, a line
    equal to the one before it dropped, and cues left empty dropped.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    cues = [cue for block in re.split(r"\n[ \t]*\n", text) if (cue := _parse_cue(block))]
    return _dedupe(cues)


def _parse_cue(block: str) -> tuple[str, str, list[str]] | None:
    """(start, end, text lines) of one cue block; None for the header, NOTE, STYLE, REGION blocks."""
    lines = block.strip("\n").split("\n")
    for index, line in enumerate(lines[:2]):
        match = TIMING.match(line)
        if match:
            return _timestamp(match[1]), _timestamp(match[2]), lines[index + 1 :]
    return None


def _timestamp(value: str) -> str:
    """``[H:]MM:SS.mmm`` (or SRT's comma) as ``HH:MM:SS.mmm``."""
    parts = value.replace(",", ".").split(":")
    if len(parts) == 2:
        parts.insert(0, "0")
    hours, minutes, seconds = parts
    return f"{int(hours):02d}:{minutes}:{seconds}"


def _dedupe(cues: list[tuple[str, str, list[str]]]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    previous: str | None = None
    for start, end, lines in cues:
        if any("<c>" in line for line in lines):
            continue
        kept = []
        for line in lines:
            if not line.strip():
                continue
            if line != previous:
                kept.append(line)
            previous = line
        if kept:
            result.append({"start": start, "end": end, "lines": kept})
    return result


def remember_secrets(yt_args: YtArgs) -> None:
    """Have :mod:`v2d_core.redact` mask the secrets of the yt-dlp options from now on."""
    options = yt_args.ytdl_options
    remember(secret_values(options))
    proxies = [yt_args.proxy] if isinstance(yt_args.proxy, str) else list(yt_args.proxy or ())
    for proxy in (*proxies, options.get("proxy")):
        if isinstance(proxy, str):
            parts = urlsplit(proxy)
            remember([parts.username, parts.password])
    cookiefile = options.get("cookiefile", yt_args.cookiefile)
    if cookiefile:
        remember(_cookie_values(Path(cookiefile)))


def _cookie_values(path: Path) -> Iterator[str]:
    """The values of a Netscape cookie file (``#HttpOnly_`` lines are cookies too)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#") and not line.startswith("#HttpOnly_"):
            continue
        fields = line.split("\t")
        if len(fields) >= 7:
            yield fields[6].strip()
