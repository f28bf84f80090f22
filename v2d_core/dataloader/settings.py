"""The dataloader's options, validated once when the dataset is built.

``decoder_kwargs`` keeps video2dataset 1.3.0's names: ``n_frames``, ``fps`` (a number, a
list of numbers to draw from, or ``"sample"`` for a random rate in ``[min_fps, max_fps]``),
``uniformly_sample``, ``num_threads``, ``return_bytes``, ``pad_frames``. ``tmpdir`` is
accepted and unused: videos are decoded from memory.

Sizes are ``(height, width)`` as 1.3.0's code reads them; an int ``resize_size`` is the
short side (aspect ratio kept), an int ``crop_size`` a square.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import ConfigError, DecodeError

FpsChoice = tuple[float, ...] | str | None
Size = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class DecoderArgs:
    """How many frames to take from each video, at which rate, and what else to return."""

    n_frames: int | None = None
    fps: FpsChoice = None
    uniformly_sample: bool = False
    num_threads: int = 4
    min_fps: int = 1
    max_fps: int = 32
    return_bytes: bool = False
    pad_frames: bool = False
    tmpdir: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS  # a larger frame is refused before it is decoded (a bomb)

    def __post_init__(self) -> None:
        _positive_int("n_frames", self.n_frames, optional=True)
        _positive_int("min_fps", self.min_fps)
        _positive_int("max_fps", self.max_fps)
        _positive_int("max_pixels", self.max_pixels)
        if self.min_fps > self.max_fps:
            raise ConfigError(f"decoder min_fps {self.min_fps} is above max_fps {self.max_fps}")
        if not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ConfigError(
                f"decoder num_threads must be an int >= 0 (0: automatic), got {self.num_threads!r}"
            )
        object.__setattr__(self, "fps", _fps(self.fps))
        if self.uniformly_sample and (self.n_frames is None or self.fps is not None):
            raise ConfigError(
                "decoder uniformly_sample needs n_frames and no fps (it spreads n_frames evenly)"
            )

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> DecoderArgs:
        """``decoder_kwargs`` as video2dataset takes them; an unknown name is a :class:`ConfigError`."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ConfigError(f"unknown decoder_kwargs {unknown}; known: {sorted(known)}")
        return cls(**kwargs)

    @property
    def fps_choices(self) -> tuple[float, ...]:
        """The rates ``fps_id`` indexes: the listed rates, or every integer rate for ``"sample"``."""
        if self.fps == "sample":
            return tuple(float(rate) for rate in range(self.min_fps, self.max_fps + 1))
        return self.fps if isinstance(self.fps, tuple) else ()


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """Resize (``resize_size``), then center or random crop (``crop_size``), the same for every frame."""

    resize_size: Size | int | None = None
    crop_size: Size | None = None
    random_crop: bool = False

    def __post_init__(self) -> None:
        if self.resize_size is not None and not isinstance(self.resize_size, int):
            object.__setattr__(self, "resize_size", _size("resize_size", self.resize_size))
        elif self.resize_size is not None:
            _positive_int("resize_size", self.resize_size)
        if self.crop_size is not None:
            object.__setattr__(self, "crop_size", _size("crop_size", self.crop_size))

    def resized(self, height: int, width: int) -> Size:
        """The (height, width) a ``height`` x ``width`` frame is scaled to before cropping."""
        if self.resize_size is None:
            return height, width
        if isinstance(self.resize_size, int):
            factor = self.resize_size / min(height, width)
            return max(1, round(height * factor)), max(1, round(width * factor))
        return self.resize_size

    def crop_box(self, height: int, width: int, rng: np.random.Generator) -> tuple[slice, slice]:
        """Rows and columns of a ``height`` x ``width`` frame to keep: centered, or at random."""
        if self.crop_size is None:
            return slice(None), slice(None)
        crop_height, crop_width = self.crop_size
        if crop_height > height or crop_width > width:
            raise DecodeError(
                f"crop_size {crop_height}x{crop_width} is larger than the {height}x{width} frames "
                "(resize_size sets the size before cropping)"
            )
        if self.random_crop:
            top, left = (
                int(rng.integers(0, height - crop_height + 1)),
                int(rng.integers(0, width - crop_width + 1)),
            )
        else:
            top, left = (height - crop_height) // 2, (width - crop_width) // 2
        return slice(top, top + crop_height), slice(left, left + crop_width)


def _positive_int(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")


def _fps(value: object) -> FpsChoice:
    if value is None or value == "sample":
        return value  # type: ignore[return-value]
    rates = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    numbers = [r for r in rates if isinstance(r, int | float) and not isinstance(r, bool) and r > 0]
    if not rates or len(numbers) != len(rates):
        raise ConfigError(f"decoder fps must be a positive number, a list of them or 'sample', got {value!r}")
    return tuple(float(rate) for rate in numbers)


def _size(name: str, value: object) -> Size:
    """An int (a square) or a (height, width) pair of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"{name} must be an int or a (height, width) pair, got {value!r}")
    for side in value:
        _positive_int(name, side)
    return int(value[0]), int(value[1])
