"""Clip spans: where they come from, how ``ClippingSubsampler``'s arguments reshape them, and
the samples they become.

Spans are ``[start, end]`` in seconds or ``"HH:MM:SS.fff"`` text. Planning follows
video2dataset 1.3.0: with ``keyframe_adjusted`` a span shrinks to its first and last
keyframe inside it (dropped when those coincide); each span is cut into pieces of
``max_length`` plus a remainder kept when at least ``min_length`` long
(``max_length_strategy: first`` keeps only the first piece). Spans are clamped to the
media's duration. Clip ``i`` of sample ``key`` is ``{key}_{i:05d}``.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.settings import ClippingArgs

CLIP_KEY_DIGITS = 5
EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class Span:
    """One clip: ``start`` and ``end`` in seconds from the media's start."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return self.end - self.start


def to_seconds(value: Any) -> float:
    """Seconds from a number or ``[HH:]MM:SS[.fff]`` text (``,`` accepted as decimal mark)."""
    numbers: list[float] = []
    if isinstance(value, int | float) and not isinstance(value, bool):
        numbers = [float(value)]
    elif isinstance(value, str) and not value.strip().startswith("-"):
        try:
            numbers = [float(part) for part in value.strip().replace(",", ".").split(":")]
        except ValueError:
            numbers = []
    if not 1 <= len(numbers) <= 3 or not all(math.isfinite(n) and n >= 0 for n in numbers):
        raise SubsampleError(f"clip time {value!r} is neither seconds >= 0 nor HH:MM:SS.fff")
    return sum(n * 60**i for i, n in enumerate(reversed(numbers)))


def to_timestamp(seconds: float) -> str:
    """``HH:MM:SS.fff`` text of ``seconds`` (the form string-typed clip columns use)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis / 1000:06.3f}"


def raw_spans(sample: Sample) -> list[list[Any]]:
    """The sample's requested spans: ``metadata["clips"]`` (set by cut detection or subtitles),
    else the ``clips`` input column; JSON text or a list, one pair or a list of pairs."""
    value = sample.metadata.get("clips")
    if value is None:
        value = sample.extra.get("clips")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SubsampleError(f"clips {value!r} is not a JSON list of [start, end]") from None
    if not value:
        raise SubsampleError("clipping is on but the sample has no clips")
    if isinstance(value, Sequence) and len(value) == 2 and not isinstance(value[0], list | tuple):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        raise SubsampleError(f"clips {value!r} is not a list of [start, end]")
    return [list(pair) for pair in value]


def plan(
    spans: Sequence[Sequence[Any]],
    args: ClippingArgs,
    *,
    keyframes: Sequence[float] | None = None,
    duration: float | None = None,
) -> list[Span]:
    """The clips to cut, in order, from requested ``spans`` (see the module docstring)."""
    result: list[Span] = []
    for start, end in spans:
        span: Span | None = Span(to_seconds(start), to_seconds(end))
        if keyframes:
            span = _to_keyframes(span, keyframes)  # type: ignore[arg-type]
        if span is not None and duration is not None:
            span = Span(span.start, min(span.end, duration)) if span.start < duration else None
        if span is None or span.length <= EPSILON:
            continue
        pieces = _split(span, args.min_length, args.max_length)
        result += pieces[:1] if args.max_length_strategy == "first" else pieces
    return result


def _to_keyframes(span: Span, keyframes: Sequence[float]) -> Span | None:
    inside = [k for k in keyframes if span.start - EPSILON <= k <= span.end + EPSILON]
    if len(inside) < 2 or min(inside) == max(inside):
        return None
    return Span(min(inside), max(inside))


def _split(span: Span, min_length: float, max_length: float) -> list[Span]:
    full = int((span.length + EPSILON) // max_length)
    pieces = [Span(span.start + i * max_length, span.start + (i + 1) * max_length) for i in range(full)]
    rest = Span(span.start + full * max_length, span.end)
    if rest.length > EPSILON and rest.length >= min_length - EPSILON:
        pieces.append(rest)
    return pieces


def clip_sample(sample: Sample, index: int, span: Span, *, as_text: bool) -> Sample:
    """Clip ``index`` of ``sample`` as a new sample without streams; its json records the span.

    ``as_text`` writes the span as ``HH:MM:SS.fff`` (when the input gave text spans).
    Like video2dataset, only the first clip keeps the (large) ``yt_meta_dict``.
    """
    pair = [to_timestamp(span.start), to_timestamp(span.end)] if as_text else [span.start, span.end]
    metadata = copy.deepcopy(sample.metadata)
    metadata["clips"] = [pair]
    metadata["original_key"] = sample.key
    if index > 0 and "yt_meta_dict" in metadata:
        metadata["yt_meta_dict"] = {}
    extra = dict(sample.extra)
    if "clips" in extra:
        extra["clips"] = json.dumps([pair])
    return Sample(
        key=f"{sample.key}_{index:0{CLIP_KEY_DIGITS}d}",
        url=sample.url,
        caption=sample.caption,
        extra=extra,
        metadata=metadata,
    )


def spans_are_text(spans: Sequence[Sequence[Any]]) -> bool:
    """Whether the requested spans were written as text (kept so in the clips' json)."""
    return bool(spans) and isinstance(spans[0][0], str)
