"""Which ffmpeg binary v2d runs: PATH's when present, else the one imageio-ffmpeg ships."""

from __future__ import annotations

import functools
import os
import shutil


@functools.cache
def ffmpeg_exe() -> str:
    """Absolute path of the ffmpeg to run (``V2D_FFMPEG`` overrides both choices)."""
    explicit = os.environ.get("V2D_FFMPEG")
    if explicit:
        return explicit
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
