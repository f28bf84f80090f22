"""``OpticalFlowSubsampler``: dense optical flow with OpenCV's Farneback method, on CPU.

The video is decoded once (:func:`~v2d_core.subsamplers.frames.read_frames`), already
resampled to ``fps`` and scaled so its short side is ``downsample_size`` (the long side
rounded, Lanczos, as video2dataset's dataloader does), then made grey as 1.3.0's cv2
detector does. The flow between consecutive frames is in pixels of those analysis frames,
as 1.3.0 reports it, and is stored as ``streams["optical_flow"]``: an ``.npy`` file of shape
``(frames - 1, height, width, 2)`` in ``dtype``. Metadata gets video2dataset's keys:
``mean_optical_flow_magnitude``, ``mean_optical_flow_magnitude_per_frame``,
``optical_flow_fps``, ``optical_flow_downsample_size`` and ``optical_flow_dtype``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.frames import read_frames
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

    def _fps(self, info: MediaInfo) -> float | None:
        """The analysis rate: ``fps`` when below the source's, else every frame (None)."""
        if self.args.fps == -1 or (info.fps and self.args.fps >= info.fps):
            return None
        return float(self.args.fps)

    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        video = sample.streams.get("video")
        if video is None:
            raise SubsampleError("optical flow needs a video stream; the sample has none")
        info = media_info(Path(video), "video")
        if not info.has_video:
            raise SubsampleError("optical flow needs a video stream; the file has none")
        width, height = analysis_size(info.width, info.height, self.args.downsample_size)
        fps = self._fps(info)
        frames = read_frames(
            Path(video),
            width=width,
            height=height,
            pix_fmt="rgb24",
            interpolation="LANCZOS",  # the dataloader's cv2.INTER_LANCZOS4
            fps=fps,
            timeout=self.args.timeout,
            what="optical flow",
            max_pixels=self.max_pixels,
        )
        flow, per_frame = self._flow(frames)
        target = workdir / f"{sample.key}.optical_flow.npy"
        np.save(target, flow)
        sample.streams["optical_flow"] = target
        sample.metadata.update(
            mean_optical_flow_magnitude=float(np.mean(per_frame)),
            mean_optical_flow_magnitude_per_frame=per_frame,
            optical_flow_fps=fps if fps is not None else float(info.fps or 0),
            optical_flow_downsample_size=self.args.downsample_size,
            optical_flow_dtype=self.args.dtype,
        )
        return [sample]

    def _flow(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, list[float]]:
        """The flow between consecutive frames in ``dtype`` (converted as it goes, to bound memory),
        and each pair's mean magnitude (computed in float32)."""
        import cv2  # OpenCV loads with the first flow computed

        flows, magnitudes = [], []
        previous = None
        for rgb in frames:
            # 1.3.0 turns its decoder's RGB frames grey with OpenCV's BGR weights; the same values here
            frame = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY)
            if previous is not None:
                # OpenCV's stubs reject ``flow=None``, which the function documents and accepts
                flow = cv2.calcOpticalFlowFarneback(previous, frame, None, *self.params)  # type: ignore[call-overload]
                magnitudes.append(float(np.linalg.norm(flow, axis=-1).mean()))
                flows.append(flow.astype(DTYPES[self.args.dtype]))
            previous = frame
        if not flows:
            raise SubsampleError("optical flow needs at least two frames")
        return np.stack(flows), magnitudes
