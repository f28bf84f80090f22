"""Frames of one video held in memory, decoded with PyAV in one forward pass that seeks only to skip work.

Wanted frames are visited in order. Before each, the reader seeks (to the keyframe at or
before it) only when the container's index shows a keyframe past the last decoded frame,
so close frames share one decode run and distant ones skip what lies between. Each kept
frame is converted to RGB and scaled in one call to ffmpeg's swscale (PyAV's reformat);
cropping is a view, and the pixels are first copied when they are batched.
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Self

import av
import numpy as np

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import DecodeError
from v2d_core.fetch.media_check import frame_size_problem

# Without an index, seek this far before a frame: B-frame reordering puts a keyframe's dts before its pts.
SEEK_MARGIN_FRAMES = 3
UNINDEXED_SEEK_SECONDS = 2.0  # without a keyframe index, seek only over gaps longer than this
RETRY_SECONDS = 2.0  # a seek that landed past its frame is retried this much earlier

IndexedFrame = tuple[int, av.VideoFrame]
Crop = tuple[slice, slice]
FULL_FRAME: Crop = (slice(None), slice(None))


@dataclass(frozen=True, slots=True)
class Frames:
    """One clip's frames, each ``[H, W, 3]`` ``uint8``, as views of the decoder's RGB images.

    Batching copies them once, straight into the batch array (:func:`Frames.array` for one clip).
    """

    images: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)

    def array(self) -> np.ndarray:
        """The clip as one ``[T, H, W, 3]`` array."""
        return np.stack(self.images)

    def padded(self, count: int) -> Frames:
        """These frames followed by ``count`` black ones."""
        black = np.zeros_like(self.images[0])
        return Frames([*self.images, *([black] * count)])


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The first video stream's frame count, average rate and size."""

    frame_count: int
    fps: float
    width: int
    height: int


class VideoReader:
    """Reads chosen frames of an encoded video given as bytes; use as a context manager."""

    def __init__(self, data: bytes, *, threads: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._container = av.open(io.BytesIO(data), mode="r")
        if not self._container.streams.video:
            self._container.close()
            raise DecodeError("the file has no video stream")
        self._stream = self._container.streams.video[0]
        context = self._stream.codec_context
        if problem := frame_size_problem(context.width, context.height, max_pixels):
            self._container.close()
            raise DecodeError(problem)
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        if not rate:
            self.close()
            raise DecodeError("the video stream has no frame rate")
        self._rate = Fraction(rate)
        self._time_base = self._stream.time_base or Fraction(1, av.time_base)
        self._frames_per_tick = float(self._time_base * self._rate)
        self._start = self._stream.start_time or 0
        self._keyframes, self._keyframe_times = self._keyframe_index()
        self.info = VideoInfo(
            frame_count=self._frame_count(),
            fps=float(self._rate),
            width=self._stream.codec_context.width,
            height=self._stream.codec_context.height,
        )

    def read(
        self, indices: Sequence[int], size: tuple[int, int] | None = None, crop: Crop = FULL_FRAME
    ) -> tuple[Frames, np.ndarray]:
        """RGB frames (scaled to ``size`` = (H, W), then cut to ``crop`` = (rows, columns)) in the order of
        ``indices``, and their times in seconds."""
        found: dict[int, tuple[np.ndarray, float]] = {}
        for target, frame in self._frames_at(sorted(set(indices))):
            found[target] = (self._rgb(frame, size)[crop], self._seconds(frame))
        frames = Frames([found[index][0] for index in indices])
        return frames, np.array([found[index][1] for index in indices], dtype=np.float64)

    def _frames_at(self, targets: Sequence[int]) -> Iterator[tuple[int, av.VideoFrame]]:
        """Each target with its frame (the first at or after it), decoding forward and seeking ahead."""
        frames: Iterator[IndexedFrame] | None = None
        last = -1
        for target in targets:
            if frames is None:
                frames = self._from(target) if self._worth_seeking(-1, target) else self._decode()
            elif self._worth_seeking(last, target):
                frames = self._from(target)
            for last, frame in frames:
                if last >= target:
                    yield target, frame
                    break
            else:
                raise DecodeError(f"the video ends at frame {last + 1}; frame {target} was asked for")

    def _decode(self) -> Iterator[IndexedFrame]:
        last = -1
        for frame in self._container.decode(self._stream):
            last = self._to_index(frame.pts) if frame.pts is not None else last + 1
            yield last, frame

    def _from(self, target: int) -> Iterator[IndexedFrame]:
        """Frames from the keyframe at or before ``target``; seeks earlier if the first lands past it."""
        earlier = (
            self._pts(target - SEEK_MARGIN_FRAMES),
            self._pts(target - round(RETRY_SECONDS * self._rate)),
            self._start,
        )
        for timestamp in (self._keyframe_time(target), *earlier):
            if timestamp is None:
                continue
            self._container.seek(timestamp, stream=self._stream, backward=True)
            frames = self._decode()
            first = next(frames, None)
            if first is not None and (first[0] <= target or timestamp <= self._start):
                return itertools.chain([first], frames)
        raise DecodeError(f"seeking to frame {target} found no frame")

    def _worth_seeking(self, last: int, target: int) -> bool:
        if len(self._keyframes) < 2:  # no index (or only its first entry, as some mkv/webm give)
            return target - last > UNINDEXED_SEEK_SECONDS * self._rate
        keyframe = self._keyframes[max(bisect.bisect_right(self._keyframes, target) - 1, 0)]
        return keyframe > last + 1

    def _keyframe_time(self, target: int) -> int | None:
        """The index timestamp of the last keyframe at or before ``target`` (seeking to it lands on it)."""
        if len(self._keyframes) < 2:
            return None
        return self._keyframe_times[max(bisect.bisect_right(self._keyframes, target) - 1, 0)]

    def _keyframe_index(self) -> tuple[list[int], list[int]]:
        """Keyframes from the container's index: their frame numbers and their index timestamps."""
        times = sorted({entry.timestamp for entry in self._stream.index_entries if entry.is_keyframe})
        return [self._to_index(timestamp) for timestamp in times], times

    def _frame_count(self) -> int:
        if self._stream.frames:
            return int(self._stream.frames)
        if self._stream.duration:
            return round(self._stream.duration * self._time_base * self._rate)
        if self._container.duration:
            return round(Fraction(self._container.duration, av.time_base) * self._rate)
        count = sum(1 for packet in self._container.demux(self._stream) if packet.size)
        self._container.seek(self._start, stream=self._stream, backward=True)
        return count

    def _to_index(self, pts: int) -> int:
        return round((pts - self._start) * self._frames_per_tick)

    def _pts(self, index: int) -> int:
        return self._start + int(max(index, 0) / self._frames_per_tick)

    def _seconds(self, frame: av.VideoFrame) -> float:
        return float(((frame.pts or 0) - self._start) * self._time_base)

    @staticmethod
    def _rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
        if size is None:
            return frame.to_ndarray(format="rgb24")
        return frame.to_ndarray(format="rgb24", height=size[0], width=size[1])

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
