"""ffmpeg-python building blocks of the fused transcode: each transform's part of the graph.

Each function takes the options of one video2dataset subsampler and returns what it
adds to the single ffmpeg invocation: filters on the video stream, input options
(decoder), or output options (encoder/muxer).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import ffmpeg

from v2d_core.subsamplers.clips import Span
from v2d_core.subsamplers.settings import AudioRateArgs, FrameArgs, ResolutionArgs

IMAGE_FORMATS = ("jpg", "jpeg", "png", "webp")
# audio codecs each output container takes as they are (a stream copy); others are re-encoded
COPYABLE_AUDIO = {
    "mp4": frozenset({"aac", "mp3", "alac", "opus", "flac", "ac3", "eac3"}),
    "mov": frozenset({"aac", "mp3", "alac", "pcm_s16le", "ac3", "eac3"}),
    "webm": frozenset({"opus", "vorbis"}),
    "mkv": frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3", "eac3", "alac", "pcm_s16le"}),
}


def resize(stream: ffmpeg.nodes.FilterableStream, args: ResolutionArgs) -> ffmpeg.nodes.FilterableStream:
    """``ResolutionSubsampler``: scale (keep aspect), center crop to at most, center pad to at least."""
    height, width = args.target_height, args.target_width
    if "scale" in args.resize_mode:
        stream = stream.filter("scale", -2, height) if height > 0 else stream.filter("scale", width, -2)
    if "crop" in args.resize_mode:
        stream = stream.filter("crop", w=f"min(iw,{width})", h=f"min(ih,{height})")
    if "pad" in args.resize_mode:
        stream = stream.filter(
            "pad", w=f"max(iw,{width})", h=f"max(ih,{height})", x="(ow-iw)/2", y="(oh-ih)/2"
        )
    return stream


def output_rate(frame: FrameArgs | None, source_fps: Fraction | None, *, exact: bool) -> Fraction | None:
    """The constant frame rate to resample to: FrameSubsampler's ``frame_rate`` (method fps), else the
    source's average rate when an exact clip needs a regular frame grid; None for no resampling."""
    method = frame.downsample_method if frame else None
    if method == "fps":
        return Fraction(frame.frame_rate).limit_denominator(1001)  # type: ignore[union-attr, arg-type]
    if exact and method is None and source_fps:
        return source_fps
    return None


def frames(seconds: float, rate: Fraction) -> int:
    """``seconds x rate`` rounded half up, tolerating the float error of times given in seconds."""
    return math.floor(seconds * float(rate) + 0.5 + 1e-6)


def frame_count(span: Span, rate: Fraction) -> int:
    """Frames of a clip on a ``rate`` grid: ``length x rate`` rounded half up, at least one."""
    return max(1, frames(span.length, rate))


def input_options(frame: FrameArgs | None, window: Span | None, *, margin: float = 0.0) -> dict[str, Any]:
    """Input (demuxer/decoder) options: seek to ``window`` (read ``margin`` seconds past its end),
    and decode keyframes only for ``downsample_method: keyframe``."""
    options: dict[str, Any] = {}
    if frame is not None and frame.downsample_method == "keyframe":
        options["skip_frame"] = "nokey"
    if window is not None:
        options["ss"] = f"{window.start:.6f}"
        options["t"] = f"{window.length + margin:.6f}"
    return options


def trim_video(
    stream: ffmpeg.nodes.FilterableStream, span: Span, window: Span, rate: Fraction | None
) -> ffmpeg.nodes.FilterableStream:
    """The clip ``span`` of a stream whose time 0 is ``window.start``: by frame index on a ``rate``
    grid (exactly ``frame_count`` frames), else by time."""
    if rate is not None:
        first = frames(span.start - window.start, rate)
        stream = stream.trim(start_frame=first, end_frame=first + frame_count(span, rate))
    else:
        stream = stream.trim(start=span.start - window.start, end=span.end - window.start)
    return stream.setpts("PTS-STARTPTS")


def trim_audio(
    stream: ffmpeg.nodes.FilterableStream, span: Span, window: Span
) -> ffmpeg.nodes.FilterableStream:
    """The clip ``span`` of an audio stream whose time 0 is ``window.start``."""
    trimmed = stream.filter("atrim", start=span.start - window.start, end=span.end - window.start)
    return trimmed.filter("asetpts", "PTS-STARTPTS")


def copies_audio(codec: str | None, ext: str) -> bool:
    """Whether an audio stream in ``codec`` goes into a ``.{ext}`` file without re-encoding."""
    return codec in COPYABLE_AUDIO.get(ext, frozenset())


def video_output_options(frame: FrameArgs | None, ext: str) -> dict[str, Any]:
    """Encoder/muxer options of the video output: one image, or yuv420p video (keyframes as VFR)."""
    if ext in IMAGE_FORMATS:
        return {"frames:v": 1, "update": 1}
    options: dict[str, Any] = {"pix_fmt": "yuv420p"}
    if frame is not None and frame.downsample_method == "keyframe":
        options["fps_mode"] = "vfr"
    return options


def audio_output_options(args: AudioRateArgs) -> dict[str, Any]:
    """``AudioRateSubsampler``: resample and remix (the codec is the container's default)."""
    options: dict[str, Any] = {"ar": args.sample_rate}
    if args.n_audio_channels is not None:
        options["ac"] = args.n_audio_channels
    return options
