"""``CutDetectionSubsampler``: scene cuts with scenedetect's ContentDetector, one decode at reduced size.

``metadata["cuts"]`` is video2dataset's shape: ``original_fps``, ``cuts_original_fps``
(scenes as ``[start_frame, end_frame)`` pairs) and ``cuts_{fps}`` for each of
``framerates`` (every n-th frame of the same decode, as scenedetect's ``frame_skip``).
With ``cuts_are_clips`` the scenes become ``metadata["clips"]`` in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.frames import read_frames
from v2d_core.subsamplers.media import media_info
from v2d_core.subsamplers.settings import CutDetectionArgs

if TYPE_CHECKING:
    from scenedetect import ContentDetector

ANALYSIS_WIDTH = 64  # frames are downscaled by an integer factor to about this width


@dataclass
class _Track:
    """One detector fed every ``stride``-th frame, and the cut frames it reported."""

    detector: ContentDetector
    stride: int
    cuts: list[int] = field(default_factory=list)

    def feed(self, index: int, fps: float, frame: Any) -> None:
        from scenedetect.common import FrameTimecode

        if index % self.stride == 0:
            found = self.detector.process_frame(FrameTimecode(index, fps), frame)
            self.cuts += [cut.frame_num for cut in found]

    def finish(self, last_index: int, fps: float) -> None:
        from scenedetect.common import FrameTimecode

        self.cuts += [cut.frame_num for cut in self.detector.post_process(FrameTimecode(last_index, fps))]


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
    factor = max(1, info.width // ANALYSIS_WIDTH)
    width, height = max(1, info.width // factor), max(1, info.height // factor)
    # scaled as scenedetect's own downscale does it (OpenCV's INTER_LINEAR: a few source pixels each)
    frames = read_frames(
        path,
        width=width,
        height=height,
        timeout=args.timeout,
        what="cut detection",
        interpolation="FAST_BILINEAR",
        max_pixels=max_pixels,
    )
    count = 0
    for index, frame in enumerate(frames):
        for track in tracks.values():
            track.feed(index, fps, frame)
        count = index + 1
    if count == 0:
        raise SubsampleError("cut detection decoded no frames")
    result: dict[str, Any] = {"original_fps": fps}
    for name, track in tracks.items():
        track.finish(count - 1, fps)
        result[name] = scenes(track.cuts, count, args.cut_detection_mode)
    return result


def _track(args: CutDetectionArgs, stride: int) -> _Track:
    from scenedetect import ContentDetector  # with the first video to cut: scenedetect loads OpenCV

    return _Track(ContentDetector(threshold=args.threshold, min_scene_len=args.min_scene_len), stride)


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
