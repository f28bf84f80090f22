"""Stream-copied clips cut in this process with FFmpeg's libraries (PyAV), without an ffmpeg process.

Each clip is what ``ffmpeg -ss S -t L -i source -map 0:v -map 0:a -c copy clip`` writes, packet
for packet: the source is seeked to the last keyframe of its first video stream at or before S
(the other streams follow to that time); every copied stream's packets are taken from there
until one has a decode time at or past S + L; all timestamps are shifted by -S, so a keyframe
before S gives the clip a lead-in with negative timestamps, which the muxer hides with an edit
list as in ffmpeg's output; a video stream starts at its first keyframe. S and L are rounded to
the microsecond as ffmpeg reads them, and timestamps are rescaled with its rounding. The source
is opened once for all its clips.

Remuxed here: sources read by the mov/mp4 demuxer (its seek is the one ffmpeg's ``-ss`` makes)
whose copied streams are video and audio without cover art. Any other source, and any error
FFmpeg's libraries report while copying, raises :class:`CannotRemux`: the caller then cuts with
an ffmpeg process. A full disk raises at once (:func:`~v2d_core.errors.raise_if_disk_full`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av

from v2d_core.errors import SubsampleTimeoutError, raise_if_disk_full
from v2d_core.media_input import open_media
from v2d_core.subsamplers.clips import Span

MICROSECOND = Fraction(1, 1_000_000)
DEADLINE_CHECK_PACKETS = 256
REMUXED_DEMUXER = "mov"  # the mov demuxer's name begins "mov,mp4,m4a,3gp,3g2,mj2"
AUXILIARY_TAGS = ("major_brand", "minor_version", "compatible_brands", "encoder")  # the muxer writes its own
MOV_SUFFIXES = (".mp4", ".mov", ".m4a", ".m4v")


class CannotRemux(Exception):
    """This source is cut by an ffmpeg process instead (the message says why)."""


def copy_spans(
    path: Path,
    spans: Sequence[Span],
    targets: Sequence[Path],
    *,
    with_video: bool,
    with_audio: bool,
    timeout: float,
    max_pixels: int,
) -> None:
    """Write clip ``spans`` of ``path`` to ``targets`` as stream copies of its video and/or audio
    streams; raises :class:`CannotRemux` when this module does not cut this source."""
    deadline = time.monotonic() + timeout
    try:
        with open_media(path, max_pixels=max_pixels) as source:
            streams = _copied_streams(source, with_video=with_video, with_audio=with_audio)
            for span, target in zip(spans, targets, strict=True):
                _copy_span(source, streams, span, target, _Deadline(deadline, timeout))
    except (av.FFmpegError, OSError, ValueError) as error:
        raise_if_disk_full(error)
        raise CannotRemux(f"{type(error).__name__}: {error}") from None


def _copied_streams(
    source: av.container.InputContainer, *, with_video: bool, with_audio: bool
) -> list[av.stream.Stream]:
    if not source.format.name.startswith(REMUXED_DEMUXER):
        raise CannotRemux(f"the {source.format.name} demuxer is left to ffmpeg")
    if any(stream.disposition & av.stream.Disposition.attached_pic for stream in source.streams.video):
        raise CannotRemux("a video stream is cover art")
    streams = [*(source.streams.video if with_video else ()), *(source.streams.audio if with_audio else ())]
    if not streams or (with_video and not source.streams.video):
        raise CannotRemux("no stream to copy")
    return streams


class _Deadline:
    def __init__(self, deadline: float, timeout: float) -> None:
        self.deadline, self.timeout, self.count = deadline, timeout, 0

    def check(self) -> None:
        self.count += 1
        if self.count % DEADLINE_CHECK_PACKETS == 0 and time.monotonic() > self.deadline:
            raise SubsampleTimeoutError(f"cutting clips took longer than {self.timeout:g}s")


def _copy_span(
    source: av.container.InputContainer,
    streams: list[av.stream.Stream],
    span: Span,
    target: Path,
    deadline: _Deadline,
) -> None:
    start = _micros(span.start) + (source.start_time or 0)
    length = _micros(span.length)
    anchor = source.streams.video[0] if source.streams.video else streams[0]
    if anchor.time_base is None:
        raise CannotRemux(f"stream {anchor.index} has no time base")
    source.seek(_rescale(start, MICROSECOND, anchor.time_base), stream=anchor, backward=True)
    with av.open(str(target), "w", options=_muxer_options(target, streams)) as output:
        output.metadata.update({k: v for k, v in source.metadata.items() if k not in AUXILIARY_TAGS})
        copies = {stream.index: _Copy(stream, output, start, length) for stream in streams}
        for packet in source.demux(streams):
            deadline.check()
            copy, dts = copies[packet.stream.index], packet.dts
            if dts is None or copy.ended:
                continue
            copy.write(packet, dts)
            if all(each.ended for each in copies.values()):
                break


class _Copy:
    """One stream of one clip: its output stream, its shift, and whether it has ended."""

    def __init__(
        self, stream: av.stream.Stream, output: av.container.OutputContainer, start: int, length: int
    ) -> None:
        self.output = output
        self.stream = output.add_stream_from_template(stream)
        self.stream.metadata.update(stream.metadata)
        if stream.time_base is None:
            raise CannotRemux(f"stream {stream.index} has no time base")
        self.time_base: Fraction = stream.time_base
        self.shift = _rescale(-start, MICROSECOND, self.time_base)
        self.end = _first_at_or_past(length, self.time_base)
        self.waits_for_keyframe = stream.type == "video"
        self.ended = False

    def write(self, packet: av.Packet, dts: int) -> None:
        """Copy ``packet`` (decode time ``dts`` in the source) unless the clip has ended for it."""
        dts += self.shift
        if dts >= self.end:
            self.ended = True
            return
        if self.waits_for_keyframe and not packet.is_keyframe:
            return
        self.waits_for_keyframe = False
        packet.dts = dts
        if packet.pts is not None:
            packet.pts += self.shift
        packet.stream = self.stream
        self.output.mux(packet)


def _muxer_options(target: Path, streams: list[av.stream.Stream]) -> dict[str, str]:
    """The mp4 muxer's movie time scale as the ffmpeg 9 build v2d runs wrote it for the clips
    compared (the finest track's), so durations round as in its output (PyAV's FFmpeg 8: 1000)."""
    if target.suffix.lower() not in MOV_SUFFIXES:
        return {}
    return {
        "movie_timescale": str(max(stream.time_base.denominator for stream in streams if stream.time_base))
    }


def _micros(seconds: float) -> int:
    """``seconds`` as ffmpeg reads the ``%.6f`` text v2d gives it, in microseconds."""
    return int(Fraction(f"{seconds:.6f}") / MICROSECOND)


def _first_at_or_past(micros: int, time_base: Fraction) -> int:
    """The first time in ``time_base`` units whose rescale to microseconds is ``micros`` or more."""
    ticks = int(micros * MICROSECOND / time_base)
    while _rescale(ticks - 1, time_base, MICROSECOND) >= micros:
        ticks -= 1
    while _rescale(ticks, time_base, MICROSECOND) < micros:
        ticks += 1
    return ticks


def _rescale(value: int, source: Fraction, target: Fraction) -> int:
    """``value`` from time base ``source`` to ``target``, halves rounded away from zero (av_rescale_q)."""
    exact = value * source / target
    rounded = int(abs(exact) + Fraction(1, 2))
    return rounded if exact >= 0 else -rounded
