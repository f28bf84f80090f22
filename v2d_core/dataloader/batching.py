"""Samples into batches: arrays of one shape stacked, numbers into arrays, anything else into lists.

With ``return_always``, a corrupted sample (``__corrupted__`` True) takes the fields of a
good sample of the same batch (or of the last batch that had one) so every array keeps its
shape; train on ``batch["__corrupted__"]`` as a mask. A batch before any good sample was
seen holds only the ``__`` fields.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from numbers import Number
from typing import Any

import numpy as np

from v2d_core.dataloader.decoding import Frames
from v2d_core.dataloader.samples import Record


class Collate:
    """Collation function for webdataset's ``batched``; remembers the last good sample as a filler."""

    def __init__(self) -> None:
        self._filler: Record | None = None

    def __call__(self, samples: Sequence[Record]) -> Record:
        good = [sample for sample in samples if not sample.get("__corrupted__")]
        if good:
            self._filler = {key: value for key, value in good[0].items() if not key.startswith("__")}
        if self._filler is not None:
            samples = [self._filled(sample) if sample.get("__corrupted__") else sample for sample in samples]
        keys = set.intersection(*(set(sample) for sample in samples))
        return {key: stack([sample[key] for sample in samples]) for key in sorted(keys)}

    def _filled(self, sample: Record) -> Record:
        assert self._filler is not None
        filler = {
            key: value if isinstance(value, np.ndarray | Frames) else copy.deepcopy(value)
            for key, value in self._filler.items()
        }
        return {**filler, **sample}


def stack(values: list[Any]) -> Any:
    """One batch field: a stacked array, an array of numbers, or the list of values."""
    first = values[0]
    if isinstance(first, Frames):
        return stack_frames(values)
    if isinstance(first, np.ndarray) and all(
        isinstance(value, np.ndarray) and value.shape == first.shape and value.dtype == first.dtype
        for value in values
    ):
        return np.stack(values)
    if all(isinstance(value, Number | np.bool_) for value in values):
        return np.asarray(values)
    return values


def stack_frames(clips: list[Frames]) -> np.ndarray | list[np.ndarray]:
    """Clips as one ``[B, T, H, W, 3]`` array, each frame copied once; clips of other sizes as a list."""
    first = clips[0].images[0]
    if any(len(clip) != len(clips[0]) for clip in clips) or any(
        image.shape != first.shape for clip in clips for image in clip.images
    ):
        return [clip.array() for clip in clips]
    batch = np.empty((len(clips), len(clips[0]), *first.shape), dtype=first.dtype)
    for row, clip in enumerate(clips):
        for column, image in enumerate(clip.images):
            batch[row, column] = image
    return batch
