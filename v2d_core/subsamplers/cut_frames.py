"""The small frames cut detection scores, sampled from the decoder's planes.

A video ``W`` x ``H`` is analysed at ``W // f`` x ``H // f``, ``f = W // 64`` (at least 1). Each
analysis pixel is the source pixel OpenCV's ``INTER_LINEAR`` downscale centres on (scenedetect's
own downscale), read straight from the decoded YUV 4:2:0 planes (luma at ``(f i + f // 2)``,
chroma at half that), then turned into BGR with BT.601's limited-range matrix a batch at a time.
Reading 1 pixel in ``f * f`` instead of scaling the whole frame with swscale saves about a third
of the per-frame cost above the decode (10 s 640x360 30 fps H.264: about 0.006 cpu-s a video),
and the frame scores stay within about 2 of a full-size ``INTER_LINEAR`` downscale's (swscale's
fast bilinear, used before, was up to 14 off on the benchmark videos).

Frames in any other pixel format or size (10-bit, 4:4:4, full-range ``yuvj420p``, a size change
mid-stream) are first converted to ``yuv420p`` at the stream's size by swscale.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

ANALYSIS_WIDTH = 64  # frames are downscaled by an integer factor to about this width
BATCH_FRAMES = 256  # frames converted and scored together
PLANAR = "yuv420p"


def _limited_to_full() -> np.ndarray:
    """A per-channel table taking limited-range Y, Cr, Cb to full range (OpenCV's YCrCb input)."""
    values = np.arange(256)
    luma = np.clip(np.round((values - 16) * 255 / 219), 0, 255)
    chroma = np.clip(np.round((values - 128) * 255 / 224 + 128), 0, 255)
    return np.stack([luma, chroma, chroma], axis=-1).astype(np.uint8)[None]


def _sampled(count: int, factor: int, chroma: bool) -> slice | np.ndarray:
    """Where ``count`` analysis pixels are read along one axis of a (luma or chroma) plane."""
    centres = factor * np.arange(count) + factor // 2
    if not chroma:
        return slice(factor // 2, factor * count, factor)
    if factor % 2 == 0:
        return slice(factor // 4, factor * count // 2, factor // 2)
    return centres // 2


class FrameSampler:
    """Collects sampled frames of a ``width`` x ``height`` stream into a batch; converts them at once."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.factor = max(1, width // ANALYSIS_WIDTH)
        self.size = (max(1, width // self.factor), max(1, height // self.factor))  # analysis (w, h)
        self.planes = np.empty((BATCH_FRAMES, self.size[1], self.size[0], 3), np.uint8)  # Y, Cr, Cb
        self.count = 0
        width, height = self.size
        self._luma = (_sampled(height, self.factor, False), _sampled(width, self.factor, False))
        self._chroma = (_sampled(height, self.factor, True), _sampled(width, self.factor, True))
        self._table = _limited_to_full()
        self._reformatter = VideoReformatter()

    @property
    def full(self) -> bool:
        return self.count == BATCH_FRAMES

    def add(self, frame: av.VideoFrame) -> None:
        """Sample ``frame`` into the batch (room is left by :meth:`bgr`)."""
        if frame.format.name != PLANAR or (frame.width, frame.height) != (self.width, self.height):
            frame = self._reformatter.reformat(frame, self.width, self.height, PLANAR)
        width, height = self.size
        target = self.planes[self.count]
        for channel, (plane, where) in enumerate(
            zip(frame.planes, (self._luma, self._chroma, self._chroma), strict=True)
        ):
            pixels = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
            rows, columns = where
            picked = pixels[rows][:, columns] if isinstance(columns, np.ndarray) else pixels[rows, columns]
            target[..., (0, 2, 1)[channel]] = picked[:height, :width]
        self.count += 1

    def bgr(self) -> np.ndarray:
        """The batch's frames as BGR (``count`` x height x width x 3); the batch is emptied."""
        import cv2  # scenedetect's dependency

        width, height = self.size
        tall = self.planes[: self.count].reshape(-1, width, 3)
        converted = cv2.cvtColor(cv2.LUT(tall, self._table), cv2.COLOR_YCrCb2BGR)
        count, self.count = self.count, 0
        return converted.reshape(count, height, width, 3)
