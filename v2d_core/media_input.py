"""How v2d opens media it did not write itself: local files, real containers, nothing else.

A downloaded "video" can be an HLS playlist or an ffconcat list naming other files or urls
(``file:///home/.../secret``, ``http://169.254.169.254/...``); ffmpeg would follow them.
Every ffmpeg and PyAV input v2d opens gets two whitelists:

- ``protocol_whitelist=file``: the input and anything it references are local files only,
  never a network or pipe protocol (fetching is the fetchers' job, behind the address guard);
- ``format_whitelist``: the container demuxers of :data:`DEMUXERS` only, so playlists and lists
  (``hls``, ``concat``, ``dash``...) that reference other files are never parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import av
import ffmpeg

# Containers that hold their media themselves (the mov demuxer's references stay off: enable_drefs=0).
DEMUXERS = (
    "mov,matroska,webm,avi,flv,mpegts,mpeg,mp3,aac,wav,w64,flac,ogg,asf,ivf,m4v,h264,hevc,mjpeg,"
    "image2,jpeg_pipe,png_pipe,webp_pipe,gif,caf,aiff,amr,mxf,nut,dv,yuv4mpegpipe,obu,av1,wv,ape,rm"
)
INPUT_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": DEMUXERS}


def input_args() -> list[str]:
    """ffmpeg command-line options to put before an ``-i`` of a file v2d did not write."""
    return [arg for name, value in INPUT_OPTIONS.items() for arg in (f"-{name}", value)]


def ffmpeg_input(path: Path, **options: Any) -> ffmpeg.nodes.FilterableStream:
    """``ffmpeg.input`` of a local media file, with the whitelists."""
    return ffmpeg.input(str(path), **INPUT_OPTIONS, **options)


def open_media(
    path: Path, options: Mapping[str, str] | None = None, max_pixels: int | None = None
) -> av.container.InputContainer:
    """PyAV's ``av.open`` of a local media file, with the whitelists and any further demuxer
    ``options``; ``max_pixels`` caps the frames the decoders PyAV opens to probe the streams may make."""
    decoder_options = {} if max_pixels is None else {"max_pixels": str(max_pixels)}
    return av.open(str(path), options=decoder_options, container_options={**INPUT_OPTIONS, **(options or {})})
