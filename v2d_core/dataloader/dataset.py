"""``get_video_dataset``: a webdataset pipeline over the shards v2d (or video2dataset) writes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from v2d_core.dataloader.batching import Collate
from v2d_core.dataloader.samples import SampleDecoder, SampleSpec, load_samples
from v2d_core.dataloader.settings import DecoderArgs, Geometry, Size
from v2d_core.dataloader.shards import open_shards, shard_urls
from v2d_core.errors import ConfigError


class VideoDataset(wds.DataPipeline, wds.FluidInterface):
    """The pipeline ``get_video_dataset`` returns: iterable, and a torch ``IterableDataset`` when torch is
    installed; ``.map(...)``, ``.select(...)`` and the rest of webdataset's fluid interface add stages."""


def get_video_dataset(
    urls: str | Sequence[str],
    batch_size: int,
    shuffle: int = 0,
    repeat: int = 1,
    drop_last: bool = False,
    video_key: str = "mp4",
    cuts_key: str | None = None,
    decoder_kwargs: Mapping[str, Any] | None = None,
    resize_size: int | Size | None = None,
    crop_size: int | Size | None = None,
    random_crop: bool = False,
    original_height_key: str = "original_height",
    original_width_key: str = "original_width",
    keys_to_remove: str | Sequence[str] | None = None,
    enforce_additional_keys: Sequence[str] | None = None,
    return_always: bool = False,
    handler: Callable[[BaseException], bool] = wds.reraise_exception,
) -> VideoDataset:
    """Batches of decoded clips from webdataset shards, with video2dataset 1.3.0's arguments.

    ``urls``: braceexpand pattern(s) or a folder, any fsspec path. ``shuffle``: buffer size for
    shards and samples (0: dataset order). ``repeat``: epochs (-1: forever). ``decoder_kwargs``:
    ``n_frames``, ``fps``, ``uniformly_sample``, ``pad_frames``, ``return_bytes``, ``num_threads``
    (see :mod:`v2d_core.dataloader.settings`); without them samples come unbatched, video as
    bytes. ``resize_size`` / ``crop_size`` / ``random_crop``: frame geometry, (height, width).
    ``cuts_key``: a member holding scenes as frame spans; by default the json's ``cuts``
    (CutDetectionSubsampler's) keep each clip inside one scene. ``enforce_additional_keys``
    (default ``["txt"]``): members a sample must have, or it is dropped. ``return_always``:
    samples that fail to load come out flagged ``__corrupted__`` instead of going to
    ``handler`` (webdataset's: ``reraise_exception`` by default, ``warn_and_continue`` skips).
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(repeat, int) or not (repeat == -1 or repeat >= 1):
        raise ConfigError(f"repeat must be a number of epochs >= 1, or -1 for forever, got {repeat!r}")
    decoder = DecoderArgs.from_kwargs(decoder_kwargs) if decoder_kwargs else None
    geometry = Geometry(
        resize_size=resize_size,
        crop_size=crop_size,  # type: ignore[arg-type]  # Geometry turns an int into a square
        random_crop=random_crop,
    )
    required = [video_key, *(["txt"] if enforce_additional_keys is None else enforce_additional_keys)]
    spec = SampleSpec(
        video_key=video_key,
        decoder=decoder,
        geometry=geometry,
        cuts_key=cuts_key,
        required=tuple(dict.fromkeys(required)),
        keys_to_remove=(keys_to_remove,) if isinstance(keys_to_remove, str) else tuple(keys_to_remove or ()),
        original_height_key=original_height_key,
        original_width_key=original_width_key,
    )
    dataset = VideoDataset(
        wds.SimpleShardList(shard_urls(urls)),
        wds.split_by_node,
        wds.split_by_worker,
        wds.shuffle(shuffle, initial=shuffle) if shuffle else None,
        wds.pipelinefilter(open_shards)(handler=handler),
        wds.pipelinefilter(tar_file_expander)(handler=handler),
        wds.pipelinefilter(group_by_keys)(handler=handler),
        wds.shuffle(shuffle, initial=shuffle) if shuffle else None,
        wds.pipelinefilter(load_samples)(SampleDecoder(spec), return_always=return_always, handler=handler),
        wds.batched(batch_size, collation_fn=Collate(), partial=not drop_last) if decoder else None,
    )
    return dataset.repeat(repeat) if repeat != 1 else dataset  # type: ignore[return-value]
