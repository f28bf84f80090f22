"""``FFProbeSubsampler``: the input video's container and stream metadata as ``video_metadata``."""

from __future__ import annotations

from pathlib import Path

from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.media import probe
from v2d_core.subsamplers.settings import FFProbeArgs


class FFProbeSubsampler(Subsampler):
    """Adds ``metadata["video_metadata"]`` (ffprobe's json shape, read with PyAV) of the video
    stream's file, or of the audio stream's when the sample has no video.

    With ``extract_keyframes`` it also holds ``keyframe_timestamps``, which
    ``precision: keyframe_adjusted`` clipping consumes.
    """

    def __init__(self, args: FFProbeArgs) -> None:
        self.args = args

    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        media = sample.streams.get("video") or sample.streams.get("audio")
        if media is None:
            raise SubsampleError("FFProbeSubsampler needs a video or audio stream; the sample has none")
        sample.metadata["video_metadata"] = probe(
            Path(media), keyframes=self.args.extract_keyframes, timeout=self.args.timeout
        )
        return [sample]
