"""Load a dataset v2d wrote, for training: clips of 8 frames at 5 fps, 224x224, each inside one scene.

    v2d-demo                                   # writes demo_dataset/ offline
    python examples/dataloader.py demo_dataset

With torch installed, the dataset goes into a ``torch.utils.data.DataLoader`` with worker
processes (the dataset batches itself, so ``batch_size=None``) and each batch becomes a float
tensor ``[B, C, T, H, W]`` in [0, 1]; without torch, the numpy batches are used as they are.
Samples that cannot be decoded are skipped with a warning (``handler=wds.warn_and_continue``).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Iterator
from typing import Any

import webdataset as wds

from v2d_core.dataloader import VideoDataset, get_video_dataset


def training_dataset(urls: str, args: argparse.Namespace) -> VideoDataset:
    """The shards under ``urls`` as shuffled batches of random 224x224 crops."""
    return get_video_dataset(
        urls,
        batch_size=args.batch_size,
        shuffle=100,
        decoder_kwargs={"n_frames": args.n_frames, "fps": args.fps, "num_threads": 1},
        resize_size=224,
        crop_size=224,
        random_crop=True,
        handler=wds.warn_and_continue,
    )


def torch_batches(dataset: VideoDataset, workers: int) -> Iterator[tuple[Any, list[str]]]:
    """Batches from worker processes, as the float video tensors a model takes, with their captions."""
    import torch

    for batch in torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers):
        video = batch["mp4"].permute(0, 4, 1, 2, 3).float().div(255)  # [B, T, H, W, C] -> [B, C, T, H, W]
        yield video, batch["txt"]


def numpy_batches(dataset: VideoDataset) -> Iterator[tuple[Any, list[str]]]:
    for batch in dataset:
        yield batch["mp4"], batch["txt"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", help="a folder of tar shards, a braceexpand pattern or an fsspec url")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--n_frames", type=int, default=8)
    parser.add_argument("--fps", type=float, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    dataset = training_dataset(args.dataset, args)
    with_torch = importlib.util.find_spec("torch") is not None
    batches = torch_batches(dataset, args.workers) if with_torch else numpy_batches(dataset)
    for step, (video, captions) in enumerate(batches):
        print(f"step {step}: video {tuple(video.shape)} {video.dtype}, captions {captions}")
    print(
        "loaded with " + (f"torch, {args.workers} workers" if with_torch else "numpy (torch not installed)")
    )


if __name__ == "__main__":
    main()
