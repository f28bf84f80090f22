"""``SourceCheckSubsampler``: a re-processing stage's look at an input video before anything decodes it."""

from __future__ import annotations

from pathlib import Path

from v2d_core.fetch.media_check import check_video
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler


class SourceCheckSubsampler(Subsampler):
    """Fails a sample whose ``video`` file is unreadable, has no video stream or no frame, or declares
    a frame size that is unknown or over ``max_pixels``; reads the header and the first frame's packet.

    Downloads get the same checks while fetching (:func:`~v2d_core.fetch.media_check.check_media`);
    the members of an input tar were checked by nobody.
    """

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels

    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        video = sample.streams.get("video")
        if video is not None:
            check_video(Path(video), self.max_pixels)
        return [sample]
