"""The analysis decode: a video's frames at the size and rate each analysis needs.

Decoded in this process by FFmpeg's libraries (PyAV), once for every analysis of a sample:
one decoder thread; each analysis that wants numpy arrays states its size, pixel format, rate
and interpolation in a :class:`FrameRequest`, and a decoded frame is converted only for the
requests whose rate keeps it, each by its own cached swscale context; an analysis that reads
the decoder's planes itself (cut detection) takes the decoded frames as they are. Measured on
10 s 640x360 30 fps H.264 (CPU seconds per video, ffmpeg 9 / PyAV 18): a full decode costs
0.046 here against 0.072 through an ``ffmpeg`` process (its start and its per-frame pipeline);
frames for optical flow (28x16 gray at 2 fps) 0.043 against 0.067.

Only regular files are opened (a named pipe would block the worker); the time limit is checked
between frames; frames over ``max_pixels`` are refused by the decoder; a packet the decoder
rejects is skipped.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import FFmpegError, SubsampleTimeoutError
from v2d_core.media_input import open_media


@dataclass(frozen=True, kw_only=True, slots=True)
class FrameRequest:
    """The frames one analysis takes: ``height`` x ``width`` uint8 arrays in ``pix_fmt`` (``bgr24``,
    ``rgb24`` or ``gray``) scaled with swscale's ``interpolation``; with ``fps``, only the first frame
    at or after each tick of ``1 / fps`` seconds (every frame when None)."""

    width: int
    height: int
    pix_fmt: str = "bgr24"
    fps: float | None = None
    interpolation: str = "AREA"


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A frame as the decoder gives it, its time in seconds from the video's first frame (None
    without timestamps), and its array for each request (by index) whose rate keeps it."""

    frame: av.VideoFrame
    time: float | None
    arrays: dict[int, np.ndarray]


def decode_frames(
    path: Path,
    requests: Sequence[FrameRequest],
    *,
    timeout: float,
    what: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[DecodedFrame]:
    """One decode of ``path``'s first video stream serving every request: each decoded frame, in
    order. The whole iteration, consumers' time included, is limited to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    _check_regular_file(path, what)
    try:
        with open_media(path, max_pixels=max_pixels) as container:
            if not container.streams.video:
                raise FFmpegError(f"{what} failed: the file has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # the pool's other processes keep every core busy
            consumers = [_Consumer(request, stream) for request in requests]
            start: float | None = None
            for frame in _decoded(container, stream):
                if time.monotonic() > deadline:
                    raise SubsampleTimeoutError(f"{what} took longer than {timeout:g}s")
                if start is None:
                    start = frame.time
                at = frame.time - start if frame.time is not None and start is not None else None
                arrays = {i: c.convert(frame) for i, c in enumerate(consumers) if c.ticks.keep(frame)}
                yield DecodedFrame(frame, at, arrays)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise FFmpegError(f"{what} failed: {error}") from None


def read_frames(
    path: Path,
    *,
    width: int,
    height: int,
    pix_fmt: str = "bgr24",
    fps: float | None = None,
    timeout: float,
    what: str,
    interpolation: str = "AREA",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[np.ndarray]:
    """The arrays of one :class:`FrameRequest` (these arguments) alone."""
    request = FrameRequest(width=width, height=height, pix_fmt=pix_fmt, fps=fps, interpolation=interpolation)
    for decoded in decode_frames(path, [request], timeout=timeout, what=what, max_pixels=max_pixels):
        if decoded.arrays:
            yield decoded.arrays[0]


def decoded_frames(
    path: Path, *, timeout: float, what: str, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[av.VideoFrame]:
    """``path``'s first video stream's frames as the decoder gives them, for an analysis that
    reads the planes itself."""
    for decoded in decode_frames(path, [], timeout=timeout, what=what, max_pixels=max_pixels):
        yield decoded.frame


def _decoded(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[av.VideoFrame]:
    """The stream's frames; a packet the decoder rejects is skipped, as the ``ffmpeg`` command
    does (a damaged stretch of a video loses its frames, not the whole analysis)."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            continue


def _check_regular_file(path: Path, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise FFmpegError(f"{what} failed: {error}") from None
    if not stat.S_ISREG(mode):
        raise FFmpegError(f"{what} failed: {path} is not a regular file")


class _Consumer:
    """One request's state during a decode: which frames it keeps and its swscale context."""

    def __init__(self, request: FrameRequest, stream: av.video.stream.VideoStream) -> None:
        self.request = request
        self.ticks = _Ticks(request.fps, stream)
        self.reformatter = VideoReformatter()
        self.method = Interpolation[request.interpolation]

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        request = self.request
        small = self.reformatter.reformat(
            frame, request.width, request.height, request.pix_fmt, interpolation=self.method
        )
        return small.to_ndarray()


class _Ticks:
    """Which decoded frames an analysis at ``fps`` keeps: the first at or after each tick, as
    video2dataset's dataloader keeps every (source fps / fps)-th frame of a constant-rate video."""

    def __init__(self, fps: float | None, stream: av.video.stream.VideoStream) -> None:
        self.step = 1 / fps if fps else None
        rate = stream.average_rate or stream.guessed_rate
        self.slack = 0.5 / float(rate) if rate else 0.0  # half a source frame: timestamps are rounded
        self.start: float | None = None
        self.next = 0.0

    def keep(self, frame: av.VideoFrame) -> bool:
        if self.step is None:
            return True
        if frame.time is None:
            raise FFmpegError("a decoded frame has no timestamp; cannot resample it to the analysis rate")
        if self.start is None:
            self.start = frame.time
        if frame.time - self.start + self.slack < self.next:
            return False
        while self.next <= frame.time - self.start + self.slack:
            self.next += self.step
        return True
