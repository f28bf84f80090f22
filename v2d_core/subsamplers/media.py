"""What a media file holds, read with PyAV (no ffprobe binary needed).

:func:`media_info` is the small summary the transforms plan with; :func:`probe`
is the ffprobe-shaped ``video_metadata`` (``{"streams": [...], "format": {...}}``,
field names and string-typed numbers as ``ffprobe -print_format json`` gives them)
with optional ``keyframe_timestamps``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from v2d_core.errors import FFmpegError, SubsampleTimeoutError
from v2d_core.fetch.media_check import FAST_OPEN
from v2d_core.media_input import open_media

DEADLINE_CHECK_PACKETS = 256
SUMMARIES_KEPT = 8


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """Duration (s), first video stream's size and average frame rate, and the first audio
    stream's codec name (None without audio)."""

    duration: float | None
    width: int = 0
    height: int = 0
    fps: Fraction | None = None
    has_video: bool = False
    audio_codec: str | None = None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def _open(path: Path, what: str) -> av.container.InputContainer:
    try:
        return open_media(path)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise FFmpegError(f"cannot read {what}: {error}") from None


def media_info(path: Path, what: str = "media") -> MediaInfo:
    """Summarise ``path``; an unreadable file raises :class:`FFmpegError`.

    An mp4/mov header holds every fact of the summary: it is read without probing any packet
    (half the cost of a probed open); other containers, or a header that leaves a fact out,
    are probed. The last few summaries are kept, keyed by the file's identity and modification
    time, so the steps of one sample's chain (cut detection, then clipping) open the file once
    for it."""
    status = path.stat() if path.is_file() else None
    if status is None:
        return _summary(path, what)
    return _cached_summary(path, what, status.st_ino, status.st_size, status.st_mtime_ns)


@functools.lru_cache(maxsize=SUMMARIES_KEPT)
def _cached_summary(path: Path, what: str, inode: int, size: int, modified: int) -> MediaInfo:
    return _summary(path, what)


def _summary(path: Path, what: str) -> MediaInfo:
    info = _from_header(path)
    if info is not None:
        return info
    with _open(path, what) as container:
        return _from_container(container)


def _from_header(path: Path) -> MediaInfo | None:
    """The summary of an mp4/mov read from its header alone; None when the header does not hold it all."""
    try:
        with open_media(path, FAST_OPEN) as container:
            if not container.format.name.startswith("mov,"):
                return None
            indexed = all(s.frames for s in container.streams if s.type in ("video", "audio"))
            info = _from_container(container)
    except (av.FFmpegError, OSError, ValueError):
        return None
    sized = not info.has_video or (info.width > 0 and info.height > 0 and info.fps is not None)
    return info if indexed and sized else None


def _from_container(container: av.container.InputContainer) -> MediaInfo:
    duration = container.duration / av.time_base if container.duration else None
    audio = container.streams.audio[0] if container.streams.audio else None
    audio_codec = (audio.codec_context.name or "unknown") if audio is not None else None
    video = container.streams.video[0] if container.streams.video else None
    if video is None:
        return MediaInfo(duration=duration, audio_codec=audio_codec)
    rate = video.average_rate or video.base_rate or video.guessed_rate
    return MediaInfo(
        duration=duration,
        width=video.codec_context.width,
        height=video.codec_context.height,
        fps=Fraction(rate) if rate else None,
        has_video=True,
        audio_codec=audio_codec,
    )


def probe(path: Path, *, keyframes: bool, timeout: float) -> dict[str, Any]:
    """ffprobe-shaped metadata of ``path``; with ``keyframes``, the video's keyframe times in
    seconds from the start, then the duration (video2dataset's ``keyframe_timestamps``)."""
    deadline = time.monotonic() + timeout
    with _open(path, "video") as container:
        metadata: dict[str, Any] = {
            "streams": [_stream(stream) for stream in container.streams],
            "format": _format(container, path),
        }
        if keyframes:
            metadata["keyframe_timestamps"] = _keyframes(container, deadline, timeout)
    return metadata


def _seconds(value: int | None, time_base: Fraction | None) -> str | None:
    if value is None or time_base is None:
        return None
    return f"{float(value * time_base):.6f}"


def _ratio(value: Fraction | None) -> str:
    return f"{value.numerator}/{value.denominator}" if value else "0/0"


def _format(container: av.container.InputContainer, path: Path) -> dict[str, Any]:
    base = Fraction(1, av.time_base)
    return {
        "filename": str(path),
        "nb_streams": len(container.streams),
        "format_name": container.format.name,
        "format_long_name": container.format.long_name,
        "start_time": _seconds(container.start_time, base),
        "duration": _seconds(container.duration, base),
        "size": str(path.stat().st_size),
        "bit_rate": str(container.bit_rate) if container.bit_rate else None,
        "tags": dict(container.metadata),
    }


def _stream(stream: av.stream.Stream) -> dict[str, Any]:
    context = stream.codec_context
    entry: dict[str, Any] = {
        "index": stream.index,
        "codec_name": context.name if context else None,
        "codec_long_name": context.codec.long_name if context else None,
        "profile": getattr(context, "profile", None),
        "codec_type": stream.type,
        "time_base": _ratio(stream.time_base),
        "start_time": _seconds(stream.start_time, stream.time_base),
        "duration": _seconds(stream.duration, stream.time_base),
        "nb_frames": str(stream.frames) if stream.frames else None,
        "bit_rate": str(context.bit_rate) if context and context.bit_rate else None,
        "tags": dict(stream.metadata),
    }
    if isinstance(stream, av.video.stream.VideoStream):
        entry.update(_video_fields(stream))
    elif isinstance(stream, av.audio.stream.AudioStream):
        entry.update(_audio_fields(stream))
    return entry


def _video_fields(stream: av.video.stream.VideoStream) -> dict[str, Any]:
    context = stream.codec_context
    return {
        "width": context.width,
        "height": context.height,
        "pix_fmt": context.pix_fmt,
        "r_frame_rate": _ratio(stream.base_rate),
        "avg_frame_rate": _ratio(stream.average_rate),
    }


def _audio_fields(stream: av.audio.stream.AudioStream) -> dict[str, Any]:
    context = stream.codec_context
    return {
        "sample_rate": str(context.sample_rate),
        "channels": context.layout.nb_channels,
        "channel_layout": context.layout.name,
        "sample_fmt": context.format.name if context.format else None,
    }


def _keyframes(container: av.container.InputContainer, deadline: float, timeout: float) -> list[float]:
    if not container.streams.video:
        return []
    stream = container.streams.video[0]
    start = _seconds(stream.start_time, stream.time_base)
    offset = float(start) if start is not None else 0.0
    times = []
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count % DEADLINE_CHECK_PACKETS == 0 and time.monotonic() > deadline:
                raise SubsampleTimeoutError(f"reading keyframes took longer than {timeout:g}s")
            if packet.is_keyframe and packet.pts is not None:
                times.append(round(float(packet.pts * packet.time_base) - offset, 6))
    except av.FFmpegError as error:
        raise FFmpegError(f"cannot read the video's packets: {error}") from None
    times.sort()
    if container.duration:
        times.append(container.duration / av.time_base)
    return times
