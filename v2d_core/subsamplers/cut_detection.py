"""``CutDetectionSubsampler``: scene cuts with scenedetect's ContentDetector, one decode at reduced size.

``metadata["cuts"]`` is video2dataset's shape: ``original_fps``, ``cuts_original_fps``
(scenes as ``[start_frame, end_frame)`` pairs) and ``cuts_{fps}`` for each of
``framerates`` (every n-th frame of the same decode, as scenedetect's ``frame_skip``).
With ``cuts_are_clips`` the scenes become ``metadata["clips"]`` in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.cut_frames import FrameSampler
from v2d_core.subsamplers.frames import decoded_frames
from v2d_core.subsamplers.media import MediaInfo, media_info
from v2d_core.subsamplers.settings import CutDetectionArgs

if TYPE_CHECKING:
    from scenedetect.detector import FlashFilter


@dataclass
class _Track:
    """scenedetect's ContentDetector (default weights: hue, saturation and luma, no edges) over
    every ``stride``-th frame, scored a batch at a time; cuts pass its ``FlashFilter`` as there.

    The filter is fed only the frames that can change its answer: the track's first frame, every
    frame at or above the threshold, and the first frame ``min_scene_len`` frames after one (below
    the threshold the filter acts there only; every other frame leaves it as it was).
    """

    threshold: float
    min_scene_len: int
    flash_filter: FlashFilter
    stride: int
    last: np.ndarray | None = None  # the HSV of the last frame scored
    pending: int | None = None  # the last frame above the threshold, until min_scene_len after it
    cuts: list[int] = field(default_factory=list)

    def feed(self, first_index: int, fps: float, hsv: np.ndarray) -> None:
        """Score the track's frames among ``hsv`` (frames ``first_index``... of the video)."""
        import cv2  # scenedetect's dependency

        offset = -first_index % self.stride
        chosen = hsv[offset :: self.stride].reshape(-1, hsv[0].size)
        if not len(chosen):
            return
        started = self.last is not None
        previous = np.concatenate([chosen[:1] if self.last is None else self.last[None], chosen[:-1]])
        # the mean of the three channels' mean absolute differences: ContentDetector's frame score
        # (0 for the first frame)
        sums = cv2.reduce(cv2.absdiff(chosen, previous), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0]
        frames = first_index + offset + self.stride * np.arange(len(chosen))
        above = sums / chosen.shape[1] >= self.threshold
        if not started and not above[0]:
            self._filter(int(frames[0]), False, fps)
        for position in np.flatnonzero(above):
            self._settle(frames[:position], fps)
            self._filter(int(frames[position]), True, fps)
        self._settle(frames, fps)
        self.last = chosen[-1]

    def _settle(self, frames: np.ndarray, fps: float) -> None:
        """Feed the filter the first of ``frames`` (all below the threshold after the pending one)
        that is ``min_scene_len`` past the pending frame, if there is one."""
        if self.pending is None:
            return
        position = int(np.searchsorted(frames, self.pending + max(self.min_scene_len, 1)))
        if position < len(frames):
            self._filter(int(frames[position]), False, fps)

    def _filter(self, index: int, above: bool, fps: float) -> None:
        from scenedetect.common import FrameTimecode

        self.cuts += [cut.frame_num for cut in self.flash_filter.filter(FrameTimecode(index, fps), above)]
        self.pending = index if above else None


def scenes(cuts: list[int], frame_count: int, mode: str) -> list[list[int]]:
    """Scenes ``[start, end)`` between ``cuts`` over ``frame_count`` frames; ``longest`` keeps one."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < frame_count), frame_count]
    found = [[start, end] for start, end in pairwise(bounds)]
    if mode == "longest":
        found = [max(found, key=lambda scene: scene[1] - scene[0])]
    return found


def detect_cuts(path: Path, args: CutDetectionArgs, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Run the detector(s) over ``path`` once and return video2dataset's ``cuts`` mapping."""
    info = media_info(path, "video")
    if not info.has_video or not info.fps:
        raise SubsampleError("cut detection needs a video stream with a frame rate")
    fps = float(info.fps)
    tracks = {"cuts_original_fps": _track(args, 1)}
    for rate in args.framerates or ():
        tracks[f"cuts_{rate}"] = _track(args, max(int(fps // rate) - 1, 0) + 1)
    count = 0
    for bgr in _batches(path, info, args.timeout, max_pixels):
        hsv = _hsv(bgr)
        for track in tracks.values():
            track.feed(count, fps, hsv)
        count += len(bgr)
    if count == 0:
        raise SubsampleError("cut detection decoded no frames")
    result: dict[str, Any] = {"original_fps": fps}
    for name, track in tracks.items():
        result[name] = scenes(track.cuts, count, args.cut_detection_mode)
    return result


def analysis_frames(
    path: Path, *, timeout: float, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[np.ndarray]:
    """The small BGR frames cut detection scores, one by one (see :mod:`~v2d_core.subsamplers.cut_frames`)."""
    for batch in _batches(path, media_info(path, "video"), timeout, max_pixels):
        yield from batch


def _batches(path: Path, info: MediaInfo, timeout: float, max_pixels: int) -> Iterator[np.ndarray]:
    sampler = FrameSampler(info.width, info.height)
    for frame in decoded_frames(path, timeout=timeout, what="cut detection", max_pixels=max_pixels):
        sampler.add(frame)
        if sampler.full:
            yield sampler.bgr()
    if sampler.count:
        yield sampler.bgr()


def _hsv(bgr: np.ndarray) -> np.ndarray:
    """BGR frames in OpenCV's HSV, converted as one tall image."""
    import cv2  # scenedetect's dependency

    count, height, width, _ = bgr.shape
    return cv2.cvtColor(bgr.reshape(-1, width, 3), cv2.COLOR_BGR2HSV).reshape(count, height, width, 3)


def _track(args: CutDetectionArgs, stride: int) -> _Track:
    from scenedetect.detector import FlashFilter  # with the first video to cut: scenedetect loads OpenCV

    return _Track(
        args.threshold, args.min_scene_len, FlashFilter(FlashFilter.Mode.MERGE, args.min_scene_len), stride
    )


class CutDetectionSubsampler(Subsampler):
    """Adds ``metadata["cuts"]``; with ``cuts_are_clips`` also ``metadata["clips"]``.

    Without ``args`` (video2dataset: an entry with no ``args``) nothing is detected, and
    ``cuts_are_clips`` turns cuts already in the metadata (an earlier stage's) into clips.
    """

    def __init__(
        self, args: CutDetectionArgs | None, *, cuts_are_clips: bool, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> None:
        self.args = args
        self.cuts_are_clips = cuts_are_clips
        self.max_pixels = max_pixels

    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        if self.args is not None:
            video = sample.streams.get("video")
            if video is None:
                raise SubsampleError("cut detection needs a video stream; the sample has none")
            sample.metadata["cuts"] = detect_cuts(Path(video), self.args, self.max_pixels)
        if self.cuts_are_clips:
            cuts = sample.metadata.get("cuts")
            if not isinstance(cuts, dict) or not cuts.get("cuts_original_fps"):
                raise SubsampleError("cuts_are_clips is on but the sample has no cuts")
            fps = cuts["original_fps"]
            sample.metadata["clips"] = [[start / fps, end / fps] for start, end in cuts["cuts_original_fps"]]
        return [sample]
