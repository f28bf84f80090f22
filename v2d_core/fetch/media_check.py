"""Is a downloaded file playable media? And which requested streams does it give?

:func:`check_media` opens a file with PyAV (container demuxers and local files only, see
:mod:`v2d_core.media_input`) and demuxes every packet (no decoding) within a time limit,
so an HTML page, a playlist, an empty file or an mp4 whose data was cut after a complete
``moov`` box is caught here rather than by a subsampler later. It also measures the
duration, which ``reading.max_duration`` bounds.
:func:`assemble_streams` turns downloaded files into the ``streams`` of a
:class:`~v2d_core.fetch.base.FetchResult`: one file per requested modality.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import av

from v2d_core.errors import FetchTimeoutError, NotMediaError, TooLongError
from v2d_core.fetch.audio import extract_audio
from v2d_core.media_input import open_media

DEADLINE_CHECK_PACKETS = 256


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media file holds."""

    has_video: bool
    has_audio: bool
    duration: float | None = None


def check_media(path: Path, timeout: float = 60) -> MediaInfo:
    """Open ``path`` and demux all its packets within ``timeout`` seconds; raise
    :class:`NotMediaError` unless it is whole media."""
    if path.stat().st_size == 0:
        raise NotMediaError("empty body: the server sent no bytes")
    try:
        with open_media(path) as container:
            kinds = {stream.type for stream in container.streams}
            if not kinds & {"video", "audio"}:
                raise NotMediaError(f"not media: no video or audio stream in {path.name}")
            end = _demux_all(container, time.monotonic() + timeout, timeout)
            declared = container.duration / av.time_base if container.duration else None
    except av.FFmpegError as error:
        raise NotMediaError(f"not readable media: {error}") from None
    duration = max(filter(None, (declared, end)), default=None)
    return MediaInfo(has_video="video" in kinds, has_audio="audio" in kinds, duration=duration)


def _demux_all(container: av.container.InputContainer, deadline: float, timeout: float) -> float | None:
    """Read every packet; a packet cut short or fewer packets than the index lists means truncation.
    Returns the latest packet end time in seconds."""
    counts: Counter[int] = Counter()
    end: float | None = None
    for packet in container.demux():
        if packet.size == 0:  # PyAV's end-of-stream flush packet
            continue
        if sum(counts.values()) % DEADLINE_CHECK_PACKETS == 0 and time.monotonic() > deadline:
            raise FetchTimeoutError(f"checking the downloaded media took longer than {timeout:g}s")
        end = max(end or 0.0, _packet_end(packet))
        if packet.is_corrupt:
            raise NotMediaError(
                f"truncated or corrupt media: packet at byte {packet.pos} of stream {packet.stream.index} "
                "is incomplete"
            )
        counts[packet.stream.index] += 1
    for stream in container.streams:
        if stream.type in ("video", "audio") and stream.frames and counts[stream.index] < stream.frames:
            raise NotMediaError(
                f"truncated or corrupt media: {stream.type} stream {stream.index} has "
                f"{counts[stream.index]} of {stream.frames} packets"
            )
    return end


def _packet_end(packet: av.Packet) -> float:
    """Seconds from its stream's start to the end of ``packet`` (0 when it has no timestamp)."""
    if packet.pts is None or packet.time_base is None:
        return 0.0
    start = packet.stream.start_time or 0
    return float((packet.pts - start + (packet.duration or 0)) * packet.time_base)


def assemble_streams(
    files: Iterable[Path],
    encode_formats: Mapping[str, str],
    workdir: Path,
    timeout: float,
    max_duration: float | None = None,
) -> dict[str, Path]:
    """Check ``files`` and map each requested modality to one of them.

    A file with a video stream is ``video``; an audio-only file is ``audio``. When
    ``audio`` is requested but only a video file came, its audio track is extracted
    (a video without audio simply gives no audio). Files nobody asked for are deleted.
    Raises :class:`NotMediaError` if no requested modality is present at all, and
    :class:`TooLongError` for a file longer than ``max_duration`` seconds.
    """
    files = list(files)
    found: dict[str, tuple[Path, MediaInfo]] = {}
    for path in files:
        info = check_media(path, timeout)
        if max_duration is not None and info.duration is not None and info.duration > max_duration:
            raise TooLongError(f"media lasts {info.duration:.1f}s, over max_duration ({max_duration:g}s)")
        found.setdefault("video" if info.has_video else "audio", (path, info))
    streams = {kind: path for kind, (path, _) in found.items() if kind in encode_formats}
    if "audio" in encode_formats and "audio" not in streams and "video" in found:
        video, info = found["video"]
        if info.has_audio:
            streams["audio"] = extract_audio(video, encode_formats["audio"], workdir, timeout=timeout)
    kept = set(streams.values())
    for path in files:
        if path not in kept:
            path.unlink(missing_ok=True)
    if not streams:
        wanted = " or ".join(sorted(kind for kind in encode_formats if kind in ("video", "audio")))
        raise NotMediaError(f"no {wanted} stream in the downloaded media")
    return streams
