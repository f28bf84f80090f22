"""The ``subsampling`` section: one frozen, validated value object per video2dataset subsampler.

The YAML shape and parameter names are video2dataset 1.3.0's::

    subsampling:
        ResolutionSubsampler:   {args: {video_size | height/width, resize_mode, encode_format}}
        FrameSubsampler:        {args: {frame_rate, downsample_method, encode_format}}
        AudioRateSubsampler:    {args: {sample_rate, n_audio_channels, encode_format}}
        ClippingSubsampler:     {args: {min_length, max_length, max_length_strategy, precision}}
        CutDetectionSubsampler: {cuts_are_clips: bool, args: {cut_detection_mode, threshold,
                                                              min_scene_len, framerates}}
        FFProbeSubsampler:      {args: {extract_keyframes}}
        OpticalFlowSubsampler:  {args: {detector, detector_args, fps, downsample_size, dtype}}

Every ``args`` also takes ``timeout`` (seconds, a v2d addition): the limit of each ffmpeg
or analysis call that subsampler makes. Unknown names and bad values raise
:class:`~v2d_core.errors.ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from v2d_core.errors import ConfigError

DEFAULT_TIMEOUT = 600.0
RESIZE_MODES = ("scale", "crop", "pad")
DOWNSAMPLE_METHODS = ("fps", "keyframe", "first_frame")
MAX_LENGTH_STRATEGIES = ("all", "first")
PRECISIONS = ("low", "keyframe_adjusted", "exact")
CUT_DETECTION_MODES = ("all", "longest")
FLOW_DTYPES = ("fp16", "fp32")
FARNEBACK_PARAMS = ("pyr_scale", "levels", "winsize", "iterations", "poly_n", "poly_sigma", "flags")


def _number(name: str, value: Any, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        relation = ">" if strict else ">="
        raise ConfigError(f"{name} must be {relation} {minimum:g}, got {value!r}")
    return value


def _integer(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _format(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.isalnum()):
        raise ConfigError(f"{name} must be a file extension such as 'mp4', got {value!r}")


def _timeout(owner: str, value: Any) -> None:
    _number(f"{owner}.timeout", value, minimum=0, strict=True)


@dataclass(frozen=True, kw_only=True)
class ResolutionArgs:
    """``ResolutionSubsampler``: scale / crop / pad, in that order, to ``video_size`` or height/width.

    ``scale`` keeps the aspect ratio and sets the height (the width when only ``width`` is
    given); ``crop`` center-crops to at most width x height; ``pad`` center-pads to at
    least width x height, so ``scale,crop,pad`` always ends at exactly width x height.
    """

    resize_mode: tuple[str, ...]
    height: int = -1
    width: int = -1
    video_size: int = -1
    encode_format: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "ResolutionSubsampler"
        modes = self.resize_mode
        if isinstance(modes, str):
            modes = tuple(mode.strip() for mode in modes.split(",") if mode.strip())
        if not isinstance(modes, Sequence) or not modes:
            raise ConfigError(f"{owner}.resize_mode must name some of {', '.join(RESIZE_MODES)}")
        for mode in modes:
            _choice(f"{owner}.resize_mode", mode, RESIZE_MODES)
        object.__setattr__(self, "resize_mode", tuple(modes))
        for name in ("height", "width", "video_size"):
            _integer(f"{owner}.{name}", getattr(self, name), minimum=-1)
        if self.video_size > 0 and (self.height > 0 or self.width > 0):
            raise ConfigError(f"{owner}: set either video_size or height/width, not both")
        if self.target_height <= 0 and self.target_width <= 0:
            raise ConfigError(f"{owner}: set video_size, height or width")
        if {"crop", "pad"} & set(modes) and (self.target_height <= 0 or self.target_width <= 0):
            raise ConfigError(f"{owner}: crop and pad need both height and width (or video_size)")
        _format(f"{owner}.encode_format", self.encode_format)
        _timeout(owner, self.timeout)

    @property
    def target_height(self) -> int:
        return self.video_size if self.video_size > 0 else self.height

    @property
    def target_width(self) -> int:
        return self.video_size if self.video_size > 0 else self.width


@dataclass(frozen=True, kw_only=True)
class FrameArgs:
    """``FrameSubsampler``: ``fps`` resamples to ``frame_rate``; ``keyframe`` keeps only keyframes;
    ``first_frame`` keeps the first frame as a jpg image."""

    frame_rate: float | None = None
    downsample_method: str = "fps"
    encode_format: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "FrameSubsampler"
        _choice(f"{owner}.downsample_method", self.downsample_method, DOWNSAMPLE_METHODS)
        if self.frame_rate is not None or self.downsample_method == "fps":
            _number(f"{owner}.frame_rate", self.frame_rate, minimum=0, strict=True)
        _format(f"{owner}.encode_format", self.encode_format)
        _timeout(owner, self.timeout)


@dataclass(frozen=True, kw_only=True)
class AudioRateArgs:
    """``AudioRateSubsampler``: resample the ``audio`` stream to ``sample_rate`` Hz and
    ``n_audio_channels`` channels (None keeps the channel count)."""

    sample_rate: int
    n_audio_channels: int | None = None
    encode_format: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "AudioRateSubsampler"
        _integer(f"{owner}.sample_rate", self.sample_rate, minimum=1)
        if self.n_audio_channels is not None:
            _integer(f"{owner}.n_audio_channels", self.n_audio_channels, minimum=1)
        _format(f"{owner}.encode_format", self.encode_format)
        _timeout(owner, self.timeout)


@dataclass(frozen=True, kw_only=True)
class ClippingArgs:
    """``ClippingSubsampler``: how spans become clips (see :mod:`v2d_core.subsamplers.clips`)."""

    min_length: float = 0.0
    max_length: float = 999999.0
    max_length_strategy: str = "all"
    precision: str = "low"
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "ClippingSubsampler"
        _number(f"{owner}.min_length", self.min_length, minimum=0)
        _number(f"{owner}.max_length", self.max_length, minimum=0, strict=True)
        _choice(f"{owner}.max_length_strategy", self.max_length_strategy, MAX_LENGTH_STRATEGIES)
        _choice(f"{owner}.precision", self.precision, PRECISIONS)
        _timeout(owner, self.timeout)


@dataclass(frozen=True, kw_only=True)
class CutDetectionArgs:
    """``CutDetectionSubsampler``: scenedetect's ContentDetector on frames at reduced size.

    ``framerates`` adds cut lists detected on every n-th frame (``cuts_{fps}``), all from
    the same single decode.
    """

    cut_detection_mode: str = "all"
    framerates: tuple[float, ...] | None = None
    threshold: float = 27.0
    min_scene_len: int = 15
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "CutDetectionSubsampler"
        _choice(f"{owner}.cut_detection_mode", self.cut_detection_mode, CUT_DETECTION_MODES)
        if self.framerates is not None:
            if not isinstance(self.framerates, Sequence) or isinstance(self.framerates, str):
                raise ConfigError(f"{owner}.framerates must be a list of numbers or null")
            for rate in self.framerates:
                _number(f"{owner}.framerates", rate, minimum=0, strict=True)
            object.__setattr__(self, "framerates", tuple(self.framerates))
        _number(f"{owner}.threshold", self.threshold, minimum=0, strict=True)
        _integer(f"{owner}.min_scene_len", self.min_scene_len, minimum=0)
        _timeout(owner, self.timeout)


@dataclass(frozen=True, kw_only=True)
class FFProbeArgs:
    """``FFProbeSubsampler``: container and stream metadata, optionally keyframe timestamps."""

    extract_keyframes: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if not isinstance(self.extract_keyframes, bool):
            raise ConfigError(
                f"FFProbeSubsampler.extract_keyframes must be true or false, got {self.extract_keyframes!r}"
            )
        _timeout("FFProbeSubsampler", self.timeout)


@dataclass(frozen=True, kw_only=True)
class OpticalFlowArgs:
    """``OpticalFlowSubsampler``: OpenCV Farneback flow between frames sampled at ``fps``
    (-1: every frame), on frames whose short side is ``downsample_size`` (None: full size)."""

    detector: str = "cv2"
    detector_args: tuple[float, ...] | None = None
    fps: float = -1
    downsample_size: int | None = None
    dtype: str = "fp16"
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        owner = "OpticalFlowSubsampler"
        if self.detector != "cv2":
            raise ConfigError(
                f"{owner}.detector {self.detector!r} is not supported; use 'cv2' (RAFT needs a GPU)"
            )
        object.__setattr__(self, "detector_args", _farneback_args(owner, self.detector_args))
        if self.fps != -1:
            _number(f"{owner}.fps", self.fps, minimum=0, strict=True)
        if self.downsample_size is not None:
            _integer(f"{owner}.downsample_size", self.downsample_size, minimum=1)
        _choice(f"{owner}.dtype", self.dtype, FLOW_DTYPES)
        _timeout(owner, self.timeout)


def _farneback_args(owner: str, value: Any) -> tuple[float, ...] | None:
    """Farneback parameters as a 7-tuple, from a list (video2dataset's form) or a mapping."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(FARNEBACK_PARAMS))
        if unknown or len(value) != len(FARNEBACK_PARAMS):
            raise ConfigError(f"{owner}.detector_args needs exactly {', '.join(FARNEBACK_PARAMS)}")
        value = [value[name] for name in FARNEBACK_PARAMS]
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(FARNEBACK_PARAMS):
        raise ConfigError(f"{owner}.detector_args must be null or the 7 values {', '.join(FARNEBACK_PARAMS)}")
    for name, item in zip(FARNEBACK_PARAMS, value, strict=True):
        _number(f"{owner}.detector_args.{name}", item)
    return tuple(value)


ARGS_CLASSES: dict[str, type] = {
    "ResolutionSubsampler": ResolutionArgs,
    "FrameSubsampler": FrameArgs,
    "AudioRateSubsampler": AudioRateArgs,
    "ClippingSubsampler": ClippingArgs,
    "CutDetectionSubsampler": CutDetectionArgs,
    "FFProbeSubsampler": FFProbeArgs,
    "OpticalFlowSubsampler": OpticalFlowArgs,
}


NO_ENGINE = {
    "CaptionSubsampler": "captioning videos with a model (1.3.0's caption stage)",
    "WhisperSubsampler": "transcribing speech with Whisper (1.3.0's whisper stage)",
}
"""video2dataset 1.3.0's subsamplers that v2d has no engine for, and the feature each one is."""


@dataclass(frozen=True, kw_only=True)
class SubsamplingConfig:
    """The parsed ``subsampling`` section: which subsamplers are on, with which arguments."""

    resolution: ResolutionArgs | None = None
    frame: FrameArgs | None = None
    audio_rate: AudioRateArgs | None = None
    clipping: ClippingArgs | None = None
    cut_detection: CutDetectionArgs | None = None
    cuts_are_clips: bool = False
    ffprobe: FFProbeArgs | None = None
    optical_flow: OpticalFlowArgs | None = None

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any]) -> SubsamplingConfig:
        """Parse video2dataset's ``subsampling`` mapping; unknown names are a ConfigError."""
        if not isinstance(section, Mapping):
            raise ConfigError(f"subsampling must be a mapping, got {type(section).__name__}")
        for name in sorted(set(section) & set(NO_ENGINE)):
            raise ConfigError(
                f"subsampling.{name}: v2d has no engine for {NO_ENGINE[name]}; remove it from the config"
            )
        unknown = sorted(set(section) - set(ARGS_CLASSES))
        if unknown:
            raise ConfigError(
                f"unknown subsampler(s) {', '.join(map(str, unknown))}; known: {', '.join(ARGS_CLASSES)}"
            )
        parsed = {name: _entry(name, section[name]) for name in section}
        cut_entry = section.get("CutDetectionSubsampler") or {}
        cuts_are_clips = cut_entry.get("cuts_are_clips", False)
        if not isinstance(cuts_are_clips, bool):
            raise ConfigError(
                f"CutDetectionSubsampler.cuts_are_clips must be true or false, got {cuts_are_clips!r}"
            )
        return cls(
            resolution=parsed.get("ResolutionSubsampler"),
            frame=parsed.get("FrameSubsampler"),
            audio_rate=parsed.get("AudioRateSubsampler"),
            clipping=parsed.get("ClippingSubsampler"),
            cut_detection=parsed.get("CutDetectionSubsampler"),
            cuts_are_clips=cuts_are_clips,
            ffprobe=parsed.get("FFProbeSubsampler"),
            optical_flow=parsed.get("OpticalFlowSubsampler"),
        )


def _entry(name: str, entry: Any) -> Any:
    """One ``{args: {...}}`` entry as its args object (None for a cut detector without args)."""
    entry = {} if entry is None else entry
    if not isinstance(entry, Mapping):
        raise ConfigError(f"subsampling.{name} must be a mapping with 'args', got {entry!r}")
    allowed = {"args", "cuts_are_clips"} if name == "CutDetectionSubsampler" else {"args"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) in subsampling.{name}: {', '.join(map(str, unknown))}")
    if name == "CutDetectionSubsampler" and "args" not in entry:
        return None  # video2dataset: no args, no detection (cuts_are_clips may reuse earlier cuts)
    args = entry.get("args") or {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"subsampling.{name}.args must be a mapping, got {args!r}")
    kind = ARGS_CLASSES[name]
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(
            f"unknown arg(s) of {name}: {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}"
        )
    try:
        return kind(**args)
    except TypeError as error:  # a required argument is missing
        raise ConfigError(f"{name}: {error}") from None
