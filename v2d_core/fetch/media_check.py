"""Is a downloaded file playable media? And which requested streams does it give?

:func:`check_media` first reads a plain mp4/mov's index without PyAV
(:mod:`v2d_core.fetch.mp4_index`: every sample must lie inside the file); any other file it
opens with PyAV (container demuxers and local files only, see :mod:`v2d_core.media_input`)
and demuxes packets (no decoding) within a time limit, so an HTML page, a playlist, an
empty file, an mp4 whose data was cut after a complete ``moov`` box, or one with no frames
at all is caught here rather than by a subsampler later. It also
measures the duration, which ``reading.max_duration`` bounds. When PyAV finds a
container that indexes its streams (an mp4 the index reader left to it) only the last
second is demuxed: a cut file always loses its end.
A video whose declared frame size is over ``reading.max_pixels`` (a decompression bomb:
a few MB that decode to gigabytes) or unknown is refused before anything decodes it
(:func:`frame_size_problem`). Cover art (an attached picture) does not make a file a video.
:func:`assemble_streams` turns downloaded files into the ``streams`` of a
:class:`~v2d_core.fetch.base.FetchResult`: one file per requested modality;
:func:`held_streams` does it for a plain mp4 body still in memory, which then never touches
the disk before the shard's writer.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import av

from v2d_core.errors import FetchTimeoutError, NotMediaError, TooLargeError, TooLongError
from v2d_core.fetch.audio import extract_audio
from v2d_core.fetch.base import MediaInfo
from v2d_core.fetch.mp4_index import read_index
from v2d_core.media_input import open_media

DEADLINE_CHECK_PACKETS = 256


def frame_size_problem(width: int, height: int, max_pixels: int) -> str | None:
    """Why a ``width`` x ``height`` video may not be decoded (unknown size, over ``max_pixels``), or None."""
    if width <= 0 or height <= 0:
        return "video frame size unknown: the header declares a size FFmpeg refuses"
    if width * height > max_pixels:
        return f"video is {width}x{height} ({width * height} pixels), over max_pixels ({max_pixels})"
    return None


def check_media(path: Path, max_pixels: int, timeout: float = 60) -> MediaInfo:
    """Open ``path`` and demux its packets within ``timeout`` seconds; raise :class:`NotMediaError`
    unless it is whole media with at least one packet, and :class:`TooLargeError` if a video's
    frames are over ``max_pixels``."""
    size = path.stat().st_size
    if size == 0:
        raise NotMediaError("empty body: the server sent no bytes")
    deadline = time.monotonic() + timeout
    with path.open("rb") as file:
        info = read_index(functools.partial(_read_at, file.fileno()), size, max_pixels)
    if info is not None:
        _check_deadline(0, deadline, timeout)
        return info
    try:
        return _check_indexed(path, max_pixels, deadline, timeout)
    except (av.FFmpegError, NotIndexedError):
        pass
    try:
        with open_media(path, max_pixels=max_pixels) as container:
            streams = _media_streams(container)
            if not streams:
                raise NotMediaError(f"not media: no video or audio stream in {path.name}")
            _check_frame_sizes(streams, max_pixels)
            counts, end = _demux_all(container, time.monotonic() + timeout, timeout)
            kinds = {stream.type for stream in streams if counts[stream.index]}
            declared = container.duration / av.time_base if container.duration else None
    except av.FFmpegError as error:
        raise NotMediaError(f"not readable media: {error}") from None
    if not kinds:
        raise NotMediaError("no video or audio data: the media has no frames (zero duration)")
    duration = max(filter(None, (declared, end)), default=None)
    return MediaInfo(has_video="video" in kinds, has_audio="audio" in kinds, duration=duration)


def _read_at(descriptor: int, offset: int, length: int) -> bytes:
    return os.pread(descriptor, length, offset)


class NotIndexedError(Exception):
    """The container has no packet index to seek in: check it the slow way."""


# Stream facts of an indexed container (mp4, mov) are in its header: no probing needed.
FAST_OPEN = {"probesize": "32", "analyzeduration": "0"}
TAIL_SECONDS = 1.0
# Muxers round stream durations (edit lists, audio priming): a stream may end this much early.
END_TOLERANCE_SECONDS = 0.25


def _check_indexed(path: Path, max_pixels: int, deadline: float, timeout: float) -> MediaInfo:
    """The fast path: open without probing, demux only the tail of an indexed container."""
    with open_media(path, FAST_OPEN) as container:
        streams = _media_streams(container)
        if not streams or not all(_indexed(stream) for stream in streams):
            raise NotIndexedError(path)
        _check_frame_sizes(streams, max_pixels)
        end = _demux_tail(container, streams, deadline, timeout)
        kinds = {stream.type for stream in streams}  # inside: a closed container's streams are freed
        declared = container.duration / av.time_base if container.duration else None
    duration = max(filter(None, (declared, end)), default=None)
    return MediaInfo(has_video="video" in kinds, has_audio="audio" in kinds, duration=duration)


def _media_streams(container: av.container.InputContainer) -> list[av.stream.Stream]:
    return [s for s in container.streams if s.type in ("video", "audio") and not _is_cover(s)]


def _indexed(stream: av.stream.Stream) -> bool:
    """The stream lists its packet count and duration (an index to seek in) and, if video, its size."""
    if isinstance(stream, av.video.stream.VideoStream) and stream.codec_context.width <= 0:
        return False
    return bool(stream.frames and stream.duration)


def _demux_tail(
    container: av.container.InputContainer, streams: list[av.stream.Stream], deadline: float, timeout: float
) -> float:
    """Seek to the last second and demux to the end; every stream's packets must reach its duration.
    Returns the latest packet end time in seconds."""
    anchor = streams[0]
    assert anchor.duration is not None and anchor.time_base is not None
    start = (anchor.start_time or 0) + anchor.duration - int(TAIL_SECONDS / anchor.time_base)
    container.seek(max(start, 0), stream=anchor, backward=True, any_frame=True)
    ends: dict[int, int] = {}
    latest = 0.0
    for count, packet in enumerate(container.demux()):
        if packet.size == 0:
            continue
        _check_deadline(count, deadline, timeout)
        _check_packet(packet)
        if packet.pts is not None:
            end = packet.pts + (packet.duration or 0)
            ends[packet.stream.index] = max(ends.get(packet.stream.index, 0), end)
            latest = max(latest, _packet_end(packet))
    for stream in streams:
        assert stream.duration is not None and stream.time_base is not None
        expected = (stream.start_time or 0) + stream.duration - int(END_TOLERANCE_SECONDS / stream.time_base)
        if ends.get(stream.index, 0) < expected:
            raise NotMediaError(
                f"truncated or corrupt media: {stream.type} stream {stream.index} ends before its "
                f"indexed duration ({float(stream.duration * stream.time_base):.2f}s)"
            )
    return latest


def _check_deadline(packets: int, deadline: float, timeout: float) -> None:
    """Every few packets: the check has run past its time limit."""
    if packets % DEADLINE_CHECK_PACKETS == 0 and time.monotonic() > deadline:
        raise FetchTimeoutError(f"checking the downloaded media took longer than {timeout:g}s")


def _check_packet(packet: av.Packet) -> None:
    if packet.is_corrupt:
        raise NotMediaError(
            f"truncated or corrupt media: packet at byte {packet.pos} of stream {packet.stream.index} "
            "is incomplete"
        )


def check_video(path: Path, max_pixels: int) -> None:
    """:func:`check_media` for a video file nobody checked (a tar's member), reading only up to its
    first frame: :class:`NotMediaError` unless it opens, has a video stream and a frame;
    :class:`TooLargeError` if that stream's frame size is unknown or over ``max_pixels``."""
    try:
        try:  # the header's frame size, read before any decoder runs
            _check_first_video_packet(open_media(path, FAST_OPEN), max_pixels, probed=False)
        except (av.FFmpegError, NotIndexedError):
            _check_first_video_packet(open_media(path, max_pixels=max_pixels), max_pixels, probed=True)
    except av.FFmpegError as error:
        raise NotMediaError(f"not readable media: {error}") from None


def _check_first_video_packet(container: av.container.InputContainer, max_pixels: int, probed: bool) -> None:
    """Frame size and first packet; without probing, a size missing from the header is not an answer."""
    with container:
        videos = [stream for stream in container.streams.video if not _is_cover(stream)]
        if not videos:
            raise NotMediaError("no video stream in the video file")
        if not probed and videos[0].codec_context.width <= 0:
            raise NotIndexedError("frame size not in the header")
        _check_frame_sizes(videos, max_pixels)
        if not any(packet.size for packet in container.demux(videos[0])):
            raise NotMediaError("no video data: the video has no frames (zero duration)")


def _is_cover(stream: av.stream.Stream) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _check_frame_sizes(streams: Sequence[av.stream.Stream], max_pixels: int) -> None:
    """TooLargeError for the first video stream whose frame size is unknown or over ``max_pixels``."""
    for stream in streams:
        if isinstance(stream, av.video.stream.VideoStream):
            problem = frame_size_problem(stream.codec_context.width, stream.codec_context.height, max_pixels)
            if problem:
                raise TooLargeError(problem)


def _demux_all(
    container: av.container.InputContainer, deadline: float, timeout: float
) -> tuple[Counter[int], float | None]:
    """Packets per stream and the latest packet end in seconds; a packet cut short or fewer packets
    than the index lists means truncation."""
    counts: Counter[int] = Counter()
    end: float | None = None
    for packet in container.demux():
        if packet.size == 0:  # PyAV's end-of-stream flush packet
            continue
        _check_deadline(sum(counts.values()), deadline, timeout)
        end = max(end or 0.0, _packet_end(packet))
        _check_packet(packet)
        counts[packet.stream.index] += 1
    for stream in container.streams:
        if stream.type in ("video", "audio") and stream.frames and counts[stream.index] < stream.frames:
            raise NotMediaError(
                f"truncated or corrupt media: {stream.type} stream {stream.index} has "
                f"{counts[stream.index]} of {stream.frames} packets"
            )
    return counts, end


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
    max_pixels: int,
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
        info = check_media(path, max_pixels, timeout)
        _check_duration(info, max_duration)
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


def held_streams(
    body: bytes, encode_formats: Mapping[str, str], max_pixels: int, max_duration: float | None = None
) -> dict[str, bytes] | None:
    """``body`` as the one requested stream, kept in memory, when its mp4 index shows it whole and
    nothing must be taken out of it; None when it needs the file checks of :func:`assemble_streams`.

    Raises :class:`NotMediaError` if its samples reach past its end, :class:`TooLongError` if it
    is longer than ``max_duration`` seconds.
    """
    view = memoryview(body)
    info = read_index(lambda offset, length: view[offset : offset + length], len(body), max_pixels)
    if info is None:
        return None
    _check_duration(info, max_duration)
    kind = "video" if info.has_video else "audio"
    if kind not in encode_formats or (kind == "video" and "audio" in encode_formats):
        return None  # an audio track to take out, or a modality nobody asked for: the file way says
    return {kind: body}


def _check_duration(info: MediaInfo, max_duration: float | None) -> None:
    if max_duration is not None and info.duration is not None and info.duration > max_duration:
        raise TooLongError(f"media lasts {info.duration:.1f}s, over max_duration ({max_duration:g}s)")
