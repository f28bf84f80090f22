"""One webdataset sample (member bytes by extension) in, a training sample out.

The video member becomes ``uint8`` RGB frames (:class:`Frames`, ``[T, H, W, 3]`` once
batched); next to it, as in
video2dataset 1.3.0: ``fps_id``, ``original_height``, ``original_width`` and ``pad_masks``
(one value per frame), ``native_fps`` (the rate the frames are spaced at), ``start_frame``,
``video_bytes`` with ``return_bytes``, and ``frame_timestamps`` (seconds; NaN for padding).
``txt`` becomes text, ``json`` a dict, ``npy`` an array (never unpickled), other members
stay bytes.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from v2d_core.dataloader.decoding import VideoInfo, VideoReader
from v2d_core.dataloader.sampling import choose_frames, scenes_in_frames
from v2d_core.dataloader.settings import DecoderArgs, Geometry
from v2d_core.errors import DecodeError, describe

Record = dict[str, Any]  # one webdataset sample: field name -> value (not v2d_core.sample.Sample)
Handler = Callable[[BaseException], bool]
INTEGER_MEMBERS = frozenset({"cls", "cls2", "class", "count", "index", "inx", "id"})


@dataclass(frozen=True, kw_only=True)
class SampleSpec:
    """What a sample must hold and how its video becomes frames (``decoder=None``: keep the bytes)."""

    video_key: str = "mp4"
    decoder: DecoderArgs | None = None
    geometry: Geometry = field(default_factory=Geometry)
    cuts_key: str | None = None
    required: tuple[str, ...] = ("mp4", "txt")
    keys_to_remove: tuple[str, ...] = ()
    original_height_key: str = "original_height"
    original_width_key: str = "original_width"


class ProcessRandom:
    """A numpy generator made afresh in each process (DataLoader workers), seeded from ``random``.

    PyTorch seeds ``random`` differently in every worker, so workers draw different clips,
    and ``random.seed`` makes a single-process run repeatable.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._generator = np.random.default_rng()

    @property
    def generator(self) -> np.random.Generator:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._generator = np.random.default_rng(random.getrandbits(64))
        return self._generator


class SampleDecoder:
    """Turns a raw sample into frames and decoded fields; raises on a sample it cannot load."""

    def __init__(self, spec: SampleSpec) -> None:
        self.spec = spec
        self._random = ProcessRandom()

    def __call__(self, raw: Record) -> Record:
        sample = {key: _member(key, value) for key, value in raw.items() if key != self.spec.video_key}
        if self.spec.decoder is None:
            sample[self.spec.video_key] = raw[self.spec.video_key]
            return sample
        sample.update(self._frames(raw[self.spec.video_key], sample))
        return sample

    def _frames(self, data: bytes, sample: Record) -> Record:
        args, geometry, rng = self.spec.decoder, self.spec.geometry, self._random.generator
        assert args is not None
        with VideoReader(data, threads=args.num_threads, max_pixels=args.max_pixels) as reader:
            info = reader.info
            choice = choose_frames(
                args, frame_count=info.frame_count, fps=info.fps, scenes=self._scenes(sample, info), rng=rng
            )
            size = geometry.resized(info.height, info.width)
            crop = geometry.crop_box(size[0], size[1], rng)
            frames, times = reader.read(
                choice.indices, None if size == (info.height, info.width) else size, crop
            )
        count = len(choice.indices) + choice.padding
        if choice.padding:
            frames = frames.padded(choice.padding)
            times = np.concatenate([times, np.full(choice.padding, np.nan)])
        fields: Record = {
            self.spec.video_key: frames,
            "fps_id": np.full(count, choice.fps_id, dtype=np.int64),
            self.spec.original_height_key: np.full(count, info.height, dtype=np.int64),
            self.spec.original_width_key: np.full(count, info.width, dtype=np.int64),
            "pad_masks": (np.arange(count) < len(choice.indices)).astype(np.float32),
            "native_fps": choice.fps,
            "start_frame": choice.start_frame,
            "frame_timestamps": times,
        }
        if args.return_bytes:
            fields["video_bytes"] = data
        return fields

    def _scenes(self, sample: Record, info: VideoInfo) -> list[tuple[int, int]] | None:
        if self.spec.cuts_key is not None:
            cuts = sample.get(self.spec.cuts_key)
            if cuts is None:
                raise DecodeError(f"cuts_key {self.spec.cuts_key!r} names no member of the sample")
            return [(int(start), int(end)) for start, end in np.asarray(cuts).reshape(-1, 2)]
        record = sample.get("json")
        if not isinstance(record, dict):
            return None
        return scenes_in_frames(record, fps=info.fps, frame_count=info.frame_count)


def load_samples(
    samples: Iterable[Record], decoder: SampleDecoder, *, return_always: bool, handler: Handler
) -> Iterator[Record]:
    """Pipeline stage: decode each sample; a failure is flagged (``return_always``) or given to ``handler``.

    Samples missing a required member are dropped, as in video2dataset (flagged with
    ``return_always``). ``handler`` follows webdataset: it raises, or returns True to go on
    and False to stop.
    """
    spec = decoder.spec
    for raw in samples:
        for key in spec.keys_to_remove:
            raw.pop(key, None)
        missing = [key for key in spec.required if key not in raw]
        if missing:
            if return_always:
                yield corrupted(raw, f"sample has no {', '.join(missing)} member")
            continue
        try:
            sample = decoder(raw)
        except Exception as error:
            failure = DecodeError(f"sample {raw.get('__key__')} of {raw.get('__url__')}: {describe(error)}")
            failure.__cause__ = error
            if return_always:
                yield corrupted(raw, str(failure))
                continue
            if handler(failure):
                continue
            break
        if return_always:
            sample.update(__corrupted__=False, __error__=None)
        yield sample


def corrupted(raw: Record, message: str) -> Record:
    """The placeholder of a sample that could not be loaded: its key and url, the flag and the reason."""
    return {
        "__key__": raw.get("__key__"),
        "__url__": raw.get("__url__"),
        "__corrupted__": True,
        "__error__": message,
    }


def _member(key: str, value: Any) -> Any:
    """A member's value by extension: text, json, integers and npy arrays decoded, the rest as is."""
    if key.startswith("__") or not isinstance(value, bytes):
        return value
    if key == "txt":
        return value.decode("utf-8", errors="replace")
    if key == "json":
        return json.loads(value)
    if key in INTEGER_MEMBERS:
        return int(value)
    if key == "npy":
        return np.load(io.BytesIO(value), allow_pickle=False)
    return value
