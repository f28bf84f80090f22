"""``v2d-demo``: an offline end-to-end run. Generates videos, serves them on 127.0.0.1, downloads them."""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from v2d_core.api import video2dataset
from v2d_core.cli import log_to_stderr
from v2d_core.runners.summary import summary_lines
from v2d_core.testing.media import make_videos
from v2d_core.testing.server import MediaServer


def write_url_list(path: Path, server: MediaServer, videos: list[Path]) -> Path:
    """A csv of the served videos plus one broken url, with captions."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["url", "caption"])
        for index, video in enumerate(videos):
            writer.writerow([server.url("files", video.name), f"generated test video {index}"])
        writer.writerow([server.url("status/404", "missing.mp4"), "a url that fails on purpose"])
    return path


def main(argv: list[str] | None = None) -> None:
    """Run the demo and print where the dataset went."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output_folder", default="demo_dataset")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--output_format", default="webdataset")
    args = parser.parse_args(argv)
    log_to_stderr("v2d-demo")
    with tempfile.TemporaryDirectory(prefix="v2d-demo-") as tmp:
        videos = make_videos(Path(tmp) / "media", args.videos, seconds=2.0, width=320, height=240)
        with MediaServer(Path(tmp) / "media") as server:
            url_list = write_url_list(Path(tmp) / "videos.csv", server, videos)
            summary = video2dataset(
                url_list=str(url_list),
                input_format="csv",
                caption_col="caption",
                output_folder=args.output_folder,
                output_format=args.output_format,
                incremental_mode="overwrite",
                processes_count=2,
                thread_count=4,
                number_sample_per_shard=4,
                allow_private_networks=True,  # the demo's server is on 127.0.0.1
            )
    print("\n".join(summary_lines(summary)))
    output = Path(args.output_folder)
    print(f"dataset written to {output.resolve()}:")
    for path in sorted(output.iterdir()):
        print(f"  {path.name}")


if __name__ == "__main__":
    main()
