"""``OpticalFlowSubsampler``: dense optical flow with OpenCV's Farneback method, on CPU.

The video is decoded once (:mod:`~v2d_core.subsamplers.frames`), already resampled to ``fps``
and scaled so its short side is ``downsample_size`` (the long side rounded, Lanczos, as
video2dataset's dataloader does), then made grey as 1.3.0's cv2 detector does. A
:class:`FlowTrack` computes the flow as frames come, so the same decode can also feed other
analyses (:mod:`~v2d_core.subsamplers.cuts_and_flow`). The flow between consecutive frames is
in pixels of those analysis frames, as 1.3.0 reports it, and is stored as
``streams["optical_flow"]``: an ``.npy`` file of shape ``(frames - 1, height, width, 2)`` in
``dtype``. Metadata gets video2dataset's keys:
``mean_optical_flow_magnitude``, ``mean_optical_flow_magnitude_per_frame``,
``optical_flow_fps``, ``optical_flow_downsample_size`` and ``optical_flow_dtype``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.frames import FrameRequest, decode_frames
from v2d_core.subsamplers.media import MediaInfo, media_info
from v2d_core.subsamplers.settings import OpticalFlowArgs

# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags: OpenCV's usual values, as video2dataset's
FARNEBACK_DEFAULTS = (0.5, 3, 15, 3, 5, 1.2, 0)
DTYPES = {"fp16": np.float16, "fp32": np.float32}


def analysis_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Frame size with the short side at ``short_side`` (None: unchanged), the other side rounded."""
    if short_side is None or min(width, height) == 0:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


@dataclass
class FlowTrack:
    """Farneback flow between consecutive analysis frames, computed as the frames come."""

    params: tuple[float, int, int, int, int, float, int]
    dtype: str
    flows: list[np.ndarray] = field(default_factory=list)
    magnitudes: list[float] = field(default_factory=list)
    previous: np.ndarray | None = None
    frames: int = 0

    def add(self, rgb: np.ndarray) -> None:
        """Take the next frame; the flow from the previous one is converted to ``dtype`` at once,
        to bound memory, and its mean magnitude computed in float32."""
        import cv2  # OpenCV loads with the first flow computed

        # 1.3.0 turns its decoder's RGB frames grey with OpenCV's BGR weights; the same values here
        frame = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY)
        if self.previous is not None:
            # OpenCV's stubs reject ``flow=None``, which the function documents and accepts
            flow = cv2.calcOpticalFlowFarneback(self.previous, frame, None, *self.params)  # type: ignore[call-overload]
            self.magnitudes.append(float(np.linalg.norm(flow, axis=-1).mean()))
            self.flows.append(flow.astype(DTYPES[self.dtype]))
        self.previous = frame
        self.frames += 1

    def between(self, first: int, last: int) -> tuple[np.ndarray, list[float]]:
        """The flow of frames ``first`` to ``last`` (exclusive) and each pair's mean magnitude."""
        if last - first < 2:
            raise SubsampleError("optical flow needs at least two frames")
        return np.stack(self.flows[first : last - 1]), self.magnitudes[first : last - 1]


class OpticalFlowSubsampler(Subsampler):
    """Adds ``streams["optical_flow"]`` (a ``.npy`` file) and the mean flow magnitudes."""

    def __init__(self, args: OpticalFlowArgs, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.args = args
        self.max_pixels = max_pixels
        pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags = (
            args.detector_args or FARNEBACK_DEFAULTS
        )
        self.params = (
            float(pyr_scale),
            int(levels),
            int(winsize),
            int(iterations),
            int(poly_n),
            float(poly_sigma),
            int(flags),
        )

    def analysis_fps(self, video_fps: Fraction | float | None) -> float | None:
        """The analysis rate of a video at ``video_fps``: ``fps`` when below it, else every frame (None)."""
        if self.args.fps == -1 or (video_fps and self.args.fps >= video_fps):
            return None
        return float(self.args.fps)

    def request(self, info: MediaInfo, fps: float | None) -> FrameRequest:
        """The frames the flow of a video like ``info`` takes at ``fps``."""
        width, height = analysis_size(info.width, info.height, self.args.downsample_size)
        # the dataloader's cv2.INTER_LANCZOS4
        return FrameRequest(width=width, height=height, pix_fmt="rgb24", fps=fps, interpolation="LANCZOS")

    def track(self) -> FlowTrack:
        """An empty :class:`FlowTrack` with these Farneback parameters and ``dtype``."""
        return FlowTrack(self.params, self.args.dtype)

    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        video = sample.streams.get("video")
        if video is None:
            raise SubsampleError("optical flow needs a video stream; the sample has none")
        info = media_info(Path(video), "video")
        if not info.has_video:
            raise SubsampleError("optical flow needs a video stream; the file has none")
        fps = self.analysis_fps(info.fps)
        decoded = decode_frames(
            Path(video),
            [self.request(info, fps)],
            timeout=self.args.timeout,
            what="optical flow",
            max_pixels=self.max_pixels,
        )
        track = self.track()
        for each in decoded:
            if each.arrays:
                track.add(each.arrays[0])
        flow, per_frame = track.between(0, track.frames)
        self.attach(sample, flow, per_frame, fps if fps is not None else float(info.fps or 0), workdir)
        return [sample]

    def attach(
        self, sample: Sample, flow: np.ndarray, per_frame: list[float], fps: float, workdir: Path
    ) -> None:
        """Write ``flow`` as the sample's ``.npy`` stream and its magnitudes as metadata."""
        target = workdir / f"{sample.key}.optical_flow.npy"
        np.save(target, flow)
        sample.streams["optical_flow"] = target
        sample.metadata.update(
            mean_optical_flow_magnitude=float(np.mean(per_frame)),
            mean_optical_flow_magnitude_per_frame=per_frame,
            optical_flow_fps=fps,
            optical_flow_downsample_size=self.args.downsample_size,
            optical_flow_dtype=self.args.dtype,
        )
