"""``CutDetectionSubsampler``: scene cuts with scenedetect's ContentDetector, one decode at reduced size.

``metadata["cuts"]`` is video2dataset's shape: ``original_fps``, ``cuts_original_fps``
(scenes as ``[start_frame, end_frame)`` pairs) and ``cuts_{fps}`` for each of
``framerates`` (every n-th frame of the same decode, as scenedetect's ``frame_skip``).
With ``cuts_are_clips`` the scenes become ``metadata["clips"]`` in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.frames import FrameRequest, read_frames
from v2d_core.subsamplers.media import MediaInfo, media_info
from v2d_core.subsamplers.settings import CutDetectionArgs

if TYPE_CHECKING:
    from scenedetect.detector import FlashFilter

ANALYSIS_WIDTH = 64  # frames are downscaled by an integer factor to about this width
BATCH_FRAMES = 256  # frames scored together (64x36 BGR: 1.8 MB a batch)


@dataclass
class _Track:
    """scenedetect's ContentDetector (default weights: hue, saturation and luma, no edges) over
    every ``stride``-th frame, scored a batch at a time; cuts pass its ``FlashFilter`` as there."""

    threshold: float
    flash_filter: FlashFilter
    stride: int
    last: np.ndarray | None = None  # the HSV of the last frame scored
    cuts: list[int] = field(default_factory=list)

    def feed(self, first_index: int, fps: float, hsv: np.ndarray) -> None:
        """Score the track's frames among ``hsv`` (frames ``first_index``... of the video)."""
        from scenedetect.common import FrameTimecode

        offset = -first_index % self.stride
        chosen = hsv[offset :: self.stride]
        if not len(chosen):
            return
        previous = chosen[:1] if self.last is None else self.last[None]
        stacked = np.concatenate([previous, chosen]).reshape(len(chosen) + 1, -1).astype(np.int16)
        # the mean of the three channels' mean absolute differences: ContentDetector's frame score
        # (0 for the first frame)
        scores = np.abs(np.diff(stacked, axis=0)).sum(axis=1) / stacked.shape[1]
        for number, score in enumerate(scores):
            index = first_index + offset + number * self.stride
            found = self.flash_filter.filter(FrameTimecode(index, fps), bool(score >= self.threshold))
            self.cuts += [cut.frame_num for cut in found]
        self.last = chosen[-1]


def scenes(cuts: list[int], frame_count: int, mode: str) -> list[list[int]]:
    """Scenes ``[start, end)`` between ``cuts`` over ``frame_count`` frames; ``longest`` keeps one."""
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < frame_count), frame_count]
    found = [[start, end] for start, end in pairwise(bounds)]
    if mode == "longest":
        found = [max(found, key=lambda scene: scene[1] - scene[0])]
    return found


def frame_request(info: MediaInfo) -> FrameRequest:
    """The frames cut detection scores: every frame, downscaled by an integer factor."""
    factor = max(1, info.width // ANALYSIS_WIDTH)
    # scaled as scenedetect's own downscale does it (OpenCV's INTER_LINEAR: a few source pixels each)
    width, height = max(1, info.width // factor), max(1, info.height // factor)
    return FrameRequest(width=width, height=height, interpolation="FAST_BILINEAR")


def detect_cuts(
    path: Path,
    args: CutDetectionArgs,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    *,
    frames: Iterator[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Run the detector(s) over ``path`` once and return video2dataset's ``cuts`` mapping.

    ``frames``: the video's frames as :func:`frame_request` asks, from a decode shared with other
    analyses (default: decoded here)."""
    info = media_info(path, "video")
    if not info.has_video or not info.fps:
        raise SubsampleError("cut detection needs a video stream with a frame rate")
    fps = float(info.fps)
    tracks = {"cuts_original_fps": _track(args, 1)}
    for rate in args.framerates or ():
        tracks[f"cuts_{rate}"] = _track(args, max(int(fps // rate) - 1, 0) + 1)
    if frames is None:
        frames = read_frames(
            path, frame_request(info), timeout=args.timeout, what="cut detection", max_pixels=max_pixels
        )
    count = 0
    while batch := tuple(islice(frames, BATCH_FRAMES)):
        hsv = _hsv(batch)
        for track in tracks.values():
            track.feed(count, fps, hsv)
        count += len(batch)
    if count == 0:
        raise SubsampleError("cut detection decoded no frames")
    result: dict[str, Any] = {"original_fps": fps}
    for name, track in tracks.items():
        result[name] = scenes(track.cuts, count, args.cut_detection_mode)
    return result


def _hsv(frames: tuple[np.ndarray, ...]) -> np.ndarray:
    """The frames in OpenCV's HSV, converted as one tall image."""
    import cv2  # scenedetect's dependency

    height = frames[0].shape[0]
    tall = cv2.cvtColor(np.concatenate(frames), cv2.COLOR_BGR2HSV)
    return tall.reshape(len(frames), height, *tall.shape[1:])


def _track(args: CutDetectionArgs, stride: int) -> _Track:
    from scenedetect.detector import FlashFilter  # with the first video to cut: scenedetect loads OpenCV

    return _Track(args.threshold, FlashFilter(FlashFilter.Mode.MERGE, args.min_scene_len), stride)


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
