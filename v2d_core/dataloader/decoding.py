"""Frames of one video held in memory, decoded with PyAV in one forward pass that seeks only to skip work.

Wanted frames are visited in order. Before each, the reader seeks (to the keyframe at or
before it) only when the container's index shows a keyframe past the last decoded frame,
so close frames share one decode run and distant ones skip what lies between. Each kept
frame is converted to RGB and scaled in one call to ffmpeg's swscale (PyAV's reformat).
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

from v2d_core.errors import DecodeError

# Seek this far before a frame: B-frame reordering puts a keyframe's dts before its pts.
SEEK_MARGIN_FRAMES = 3
UNINDEXED_SEEK_SECONDS = 2.0  # without a keyframe index, seek only over gaps longer than this

IndexedFrame = tuple[int, av.VideoFrame]


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The first video stream's frame count, average rate and size."""

    frame_count: int
    fps: float
    width: int
    height: int


class VideoReader:
    """Reads chosen frames of an encoded video given as bytes; use as a context manager."""

    def __init__(self, data: bytes, *, threads: int = 0) -> None:
        self._container = av.open(io.BytesIO(data), mode="r")
        if not self._container.streams.video:
            self._container.close()
            raise DecodeError("the file has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = threads
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        if not rate:
            self.close()
            raise DecodeError("the video stream has no frame rate")
        self._rate = Fraction(rate)
        self._time_base = self._stream.time_base or Fraction(1, av.time_base)
        self._start = self._stream.start_time or 0
        self._keyframes = self._keyframe_indices()
        self.info = VideoInfo(
            frame_count=self._frame_count(),
            fps=float(self._rate),
            width=self._stream.codec_context.width,
            height=self._stream.codec_context.height,
        )

    def read(
        self, indices: Sequence[int], size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB frames ``[len(indices), H, W, 3]`` (scaled to ``size`` = (H, W)) and their times in seconds."""
        found: dict[int, tuple[np.ndarray, float]] = {}
        frames: Iterator[IndexedFrame] | None = None
        last = -1
        for target in sorted(set(indices)):
            if frames is None:
                frames = self._from(target) if self._worth_seeking(-1, target) else self._decode()
            elif self._worth_seeking(last, target):
                frames = self._from(target)
            for last, frame in frames:
                if last >= target:
                    found[target] = (self._rgb(frame, size), self._seconds(frame))
                    break
            else:
                raise DecodeError(f"the video ends at frame {last + 1}; frame {target} was asked for")
        pixels = np.stack([found[index][0] for index in indices])
        return pixels, np.array([found[index][1] for index in indices], dtype=np.float64)

    def _decode(self) -> Iterator[IndexedFrame]:
        last = -1
        for frame in self._container.decode(self._stream):
            last = self._index(frame) if frame.pts is not None else last + 1
            yield last, frame

    def _from(self, target: int) -> Iterator[IndexedFrame]:
        """Frames from the keyframe at or before ``target``; seeks earlier if the first lands past it."""
        for back in (SEEK_MARGIN_FRAMES, round(UNINDEXED_SEEK_SECONDS * self._rate), target):
            position = max(target - back, 0)
            self._container.seek(self._pts(position), stream=self._stream, backward=True)
            frames = self._decode()
            first = next(frames, None)
            if first is None:
                break
            if first[0] <= target or position == 0:
                return itertools.chain([first], frames)
        raise DecodeError(f"seeking to frame {target} found no frame")

    def _worth_seeking(self, last: int, target: int) -> bool:
        if len(self._keyframes) < 2:  # no index (or only its first entry, as some mkv/webm give)
            return target - last > UNINDEXED_SEEK_SECONDS * self._rate
        keyframe = self._keyframes[max(bisect.bisect_right(self._keyframes, target) - 1, 0)]
        return keyframe > last + 1

    def _keyframe_indices(self) -> list[int]:
        entries = self._stream.index_entries
        return sorted({self._to_index(entry.timestamp) for entry in entries if entry.is_keyframe})

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

    def _index(self, frame: av.VideoFrame) -> int:
        return self._to_index(frame.pts or 0)

    def _to_index(self, pts: int) -> int:
        return round((pts - self._start) * self._time_base * self._rate)

    def _pts(self, index: int) -> int:
        return self._start + int(index / self._rate / self._time_base)

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
