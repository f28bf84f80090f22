"""Is a downloaded file playable media? And which requested streams does it give?

:func:`check_media` opens a file with PyAV and demuxes every packet (no decoding),
so an HTML page, an empty file or an mp4 whose data was cut after a complete
``moov`` box is caught here rather than by a subsampler later.
:func:`assemble_streams` turns downloaded files into the ``streams`` of a
:class:`~v2d_core.fetch.base.FetchResult`: one file per requested modality.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import av

from v2d_core.errors import NotMediaError
from v2d_core.fetch.audio import extract_audio


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media file holds."""

    has_video: bool
    has_audio: bool


def check_media(path: Path) -> MediaInfo:
    """Open ``path`` and demux all its packets; raise :class:`NotMediaError` unless it is whole media."""
    if path.stat().st_size == 0:
        raise NotMediaError("empty body: the server sent no bytes")
    try:
        with av.open(str(path)) as container:
            kinds = {stream.type for stream in container.streams}
            if not kinds & {"video", "audio"}:
                raise NotMediaError(f"not media: no video or audio stream in {path.name}")
            _demux_all(container)
    except av.FFmpegError as error:
        raise NotMediaError(f"not readable media: {error}") from None
    return MediaInfo(has_video="video" in kinds, has_audio="audio" in kinds)


def _demux_all(container: av.container.InputContainer) -> None:
    """Read every packet; a packet cut short or fewer packets than the index lists means truncation."""
    counts: Counter[int] = Counter()
    for packet in container.demux():
        if packet.size == 0:  # PyAV's end-of-stream flush packet
            continue
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


def assemble_streams(
    files: Iterable[Path], encode_formats: Mapping[str, str], workdir: Path, timeout: float
) -> dict[str, Path]:
    """Check ``files`` and map each requested modality to one of them.

    A file with a video stream is ``video``; an audio-only file is ``audio``. When
    ``audio`` is requested but only a video file came, its audio track is extracted
    (a video without audio simply gives no audio). Files nobody asked for are deleted.
    Raises :class:`NotMediaError` if no requested modality is present at all.
    """
    files = list(files)
    found: dict[str, tuple[Path, MediaInfo]] = {}
    for path in files:
        info = check_media(path)
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
