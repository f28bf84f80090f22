"""A worked dataset, offline: a url list in; downloaded, downsampled and optical-flow datasets out.

Generated videos (two 4-second scenes each) are served on 127.0.0.1 in place of the web, and
v2d's Python API runs three stages, each reading the one before and keeping its shard ids:

1. download: the url list (csv with captions) into webdataset tars;
2. downsample: the ``downsample_ml`` preset (224x224, 5 fps, scene cuts turned into clips);
3. optical flow: the ``optical_flow`` preset (Farneback flow at 2 fps, ``{key}.npy``).

Then it loads one training batch from the downsampled dataset with ``get_video_dataset``.
The same three stages with the command line:

    video2dataset --url_list=urls.csv --input_format=csv --caption_col=caption \\
        --output_folder=out/download --output_format=webdataset
    video2dataset --url_list=out/download --input_format=webdataset --stage=subset \\
        --config=downsample_ml --output_folder=out/downsample --output_format=webdataset
    video2dataset --url_list=out/downsample --input_format=webdataset --stage=optical_flow \\
        --config=optical_flow --output_folder=out/optical_flow --output_format=webdataset

Run it with ``python examples/worked_dataset.py --output_folder worked_dataset``.
"""

from __future__ import annotations

import argparse
import csv
import io
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from v2d_core import video2dataset
from v2d_core.dataloader import get_video_dataset
from v2d_core.testing.scenes import make_scene_video
from v2d_core.testing.server import MediaServer

SCENES = [("testsrc2", 4.0), ("smptebars", 4.0)]


def write_url_list(path: Path, server: MediaServer, videos: list[Path]) -> Path:
    """The input: one row per video with a caption."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "caption"])
        for index, video in enumerate(videos):
            writer.writerow([server.url("files", video.name), f"two scenes, video {index}"])
    return path


def run_stages(url_list: Path, output: Path, processes: int) -> dict[str, Path]:
    """Download, then downsample the download, then optical flow of the downsampled clips."""
    common = {"output_format": "webdataset", "processes_count": processes, "thread_count": 4}
    folders = {stage: output / stage for stage in ("download", "downsample", "optical_flow")}
    steps = [
        ("download", {"url_list": str(url_list), "input_format": "csv", "caption_col": "caption"}),
        ("downsample", {"url_list": str(folders["download"]), "stage": "subset", "config": "downsample_ml"}),
        (
            "optical_flow",
            {"url_list": str(folders["downsample"]), "stage": "optical_flow", "config": "optical_flow"},
        ),
    ]
    for name, options in steps:
        reading = {} if name == "download" else {"input_format": "webdataset"}
        summary = video2dataset(
            output_folder=str(folders[name]),
            number_sample_per_shard=2,
            show_progress=False,
            **reading,
            **options,
            **common,  # type: ignore[arg-type]
        )
        print(f"{name}: {summary.totals['success']} of {summary.totals['count']} samples -> {folders[name]}")
    return folders


def show_training_batch(downsampled: Path) -> None:
    """What a training loop gets from the downsampled dataset: 8-frame clips inside one scene."""
    loader = get_video_dataset(str(downsampled), batch_size=2, decoder_kwargs={"n_frames": 8})
    batch = next(iter(loader))
    frames = batch["mp4"]
    print(f"batch: mp4 {frames.shape} {frames.dtype}, keys {batch['__key__']}, fps {batch['native_fps']}")


def show_flow(flow: Path) -> None:
    """The first optical-flow array: [frames, height, width, 2] per clip."""
    with tarfile.open(sorted(flow.glob("*.tar"))[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".npy"))
        array = np.load(io.BytesIO(tar.extractfile(member).read()))  # type: ignore[union-attr]
    print(f"optical flow: {member.name} {array.shape} {array.dtype}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_folder", default="worked_dataset")
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    output = Path(args.output_folder).resolve()
    with tempfile.TemporaryDirectory(prefix="v2d-example-") as tmp:
        media = Path(tmp) / "media"
        videos = [
            make_scene_video(media / f"video_{index}.mp4", SCENES, width=320, height=240)
            for index in range(args.videos)
        ]
        with MediaServer(media) as server:
            folders = run_stages(
                write_url_list(Path(tmp) / "urls.csv", server, videos), output, args.processes
            )
    show_training_batch(folders["downsample"])
    show_flow(folders["optical_flow"])


if __name__ == "__main__":
    main()
