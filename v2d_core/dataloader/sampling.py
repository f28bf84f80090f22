"""Which frames of a video a sample takes (video2dataset 1.3.0's rules), inside one scene when cuts are known.

- ``fps``: frames are ``stride = round(native / fps)`` apart, ``fps`` drawn from the listed
  rates that do not exceed the video's, or any integer rate in ``[min_fps, max_fps]`` for
  ``"sample"``; without ``fps`` every frame is taken.
- ``n_frames``: a window of that many frames at a random start; without it, the whole video.
- ``uniformly_sample``: ``n_frames`` indices spread evenly over the whole video.
- Scenes (from the json's ``cuts``, see :func:`scenes_in_frames`): the window is drawn inside
  one scene long enough to hold it, chosen at random among those.
- ``pad_frames``: a video (or scene) too short gives the frames it has plus zero frames;
  otherwise it is an error for that sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from v2d_core.dataloader.settings import DecoderArgs
from v2d_core.errors import DecodeError
from v2d_core.subsamplers.clips import to_seconds

SAME_VIDEO_SECONDS = 0.25  # cuts whose total length is this close to the video's describe the video itself

Scene = tuple[int, int]


@dataclass(frozen=True, slots=True)
class FrameChoice:
    """Frame numbers to decode in output order, the rate they are spaced at, and zero frames to append."""

    indices: tuple[int, ...]
    fps: float
    fps_id: int
    padding: int = 0

    @property
    def start_frame(self) -> int:
        return self.indices[0]


def choose_frames(
    args: DecoderArgs,
    *,
    frame_count: int,
    fps: float,
    scenes: Sequence[Scene] | None,
    rng: np.random.Generator,
) -> FrameChoice:
    """The frames of a ``frame_count``-frame video at ``fps`` that one sample takes."""
    if frame_count <= 0:
        raise DecodeError("the video has no frames")
    rate, fps_id = choose_fps(args, fps, rng)
    stride = max(1, round(fps / rate))
    if args.uniformly_sample:
        assert args.n_frames is not None  # DecoderArgs checks it
        spread = np.linspace(0, frame_count - 1, args.n_frames).astype(int)
        return FrameChoice(tuple(int(i) for i in spread), rate, fps_id)
    if args.n_frames is None:
        return FrameChoice(tuple(range(0, frame_count, stride)), rate, fps_id)
    needed = (args.n_frames - 1) * stride + 1
    low, high = _range(scenes or [(0, frame_count)], needed, args.pad_frames, rng)
    count = min(args.n_frames, (high - low - 1) // stride + 1)
    start = low + int(rng.integers(0, high - low - needed + 1)) if count == args.n_frames else low
    indices = tuple(range(start, start + count * stride, stride))
    return FrameChoice(indices, rate, fps_id, args.n_frames - count)


def choose_fps(args: DecoderArgs, native: float, rng: np.random.Generator) -> tuple[float, int]:
    """The rate to sample at and its ``fps_id`` (its index in the requested rates)."""
    if args.fps is None:
        return native, 0
    choices = args.fps_choices
    allowed = [index for index, rate in enumerate(choices) if rate <= round(native)]
    if not allowed:
        raise DecodeError(f"the video's {native:g} fps is below every requested rate {list(choices)}")
    fps_id = allowed[int(rng.integers(0, len(allowed)))]
    return choices[fps_id], fps_id


def _range(scenes: Sequence[Scene], needed: int, pad: bool, rng: np.random.Generator) -> Scene:
    """A scene (or the whole video) that holds ``needed`` frames, at random; the longest one if padding."""
    fitting = [scene for scene in scenes if scene[1] - scene[0] >= needed]
    if fitting:
        return fitting[int(rng.integers(0, len(fitting)))]
    longest = max(scenes, key=lambda scene: scene[1] - scene[0])
    if pad:
        return longest
    what = "scene" if len(scenes) > 1 else "video"
    raise DecodeError(
        f"a clip needs {needed} frames, the longest {what} has {longest[1] - longest[0]} "
        "(use fewer frames, a lower fps or pad_frames=True)"
    )


def scenes_in_frames(record: Mapping[str, Any], *, fps: float, frame_count: int) -> list[Scene] | None:
    """Scenes ``[start, end)`` of this video, in its own frames, from the json's ``cuts``.

    v2d (like video2dataset) writes cuts as frame spans at the original rate; converted
    through seconds, they still hold after a frame rate change. A clip of a longer video
    (its json has ``original_key`` and ``clips``) carries its source's cuts: they are
    shifted to the clip's start and cut to its length.
    """
    cuts = record.get("cuts")
    if not isinstance(cuts, Mapping) or not cuts.get("cuts_original_fps") or not cuts.get("original_fps"):
        return None
    source_fps = float(cuts["original_fps"])
    spans = [(start / source_fps, end / source_fps) for start, end in cuts["cuts_original_fps"]]
    offset, length = _clip_window(record, spans, frame_count / fps)
    scenes = []
    for start, end in spans:
        first = max(0, math.ceil((start - offset) * fps - 1e-6))
        last = min(frame_count, math.floor((min(end - offset, length)) * fps + 1e-6))
        if last > first:
            scenes.append((first, last))
    return scenes or None


def _clip_window(
    record: Mapping[str, Any], spans: list[tuple[float, float]], duration: float
) -> tuple[float, float]:
    """(offset, length) in seconds of this video inside the one the cuts were detected on."""
    clips = record.get("clips")
    covered = max(end for _, end in spans)
    if record.get("original_key") and clips and abs(covered - duration) > SAME_VIDEO_SECONDS:
        start, end = (to_seconds(value) for value in clips[0])
        return start, end - start
    return 0.0, math.inf
