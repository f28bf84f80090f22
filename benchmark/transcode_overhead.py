"""Where v2d's CPU goes in the downsample workload, per video: its ffmpeg, and its own work around it.

One process, one lane, no server: ``--videos`` generated 10 s 640x360 25 fps H.264/AAC videos
are packed into plain tars of ``--per-shard`` samples (an mp4 and a json each). Tar by tar, in
alternating order, the same videos go through

- bare ffmpeg: ``downsample_vs_ffmpeg.py``'s cheapest command, one process per file;
- v2d: ``process_shard`` of the subset stage with the downsample config, in this process.

CPU is taken with ``getrusage``: ``RUSAGE_CHILDREN`` for the ffmpeg processes of either side,
``RUSAGE_SELF`` for v2d's own work (tar read, header reads, the ffmpeg-python graph, the
process spawn, tar, json and parquet writes). Alternating tar by tar keeps the two sides
under the same load, so the ratio holds on a busy machine better than two separate runs do.
The first shard's one-time imports (pyarrow's pandas on the first parquet write) are paid
by a warm-up shard and reported apart. Start-up of the command (imports, forkserver,
workers) is not here: ``downsample_vs_ffmpeg.py`` includes it.

    python benchmark/transcode_overhead.py --videos 50
    python benchmark/transcode_overhead.py --videos 50 --profile   # also v2d's own top functions
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import pstats
import resource
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from downsample_vs_ffmpeg import SUBSAMPLING, ffmpeg_argv, uptime  # benchmark/ is on sys.path

from v2d_core.api import load_config
from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.shards.process import process_shard
from v2d_core.testing.media import make_videos


@dataclass(slots=True)
class Side:
    """CPU seconds summed over the videos of one side: its own process, its ffmpeg processes."""

    own: float = 0.0
    ffmpeg: float = 0.0

    @property
    def total(self) -> float:
        return self.own + self.ffmpeg


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def write_tar(path: Path, shard_id: int, videos: list[Path]) -> None:
    """A webdataset tar like v2d's download writes: ``{key}.mp4`` and ``{key}.json`` per sample."""
    with tarfile.open(path, "w") as tar:
        for index, video in enumerate(videos):
            key = f"{shard_id:05d}{index:04d}"
            record = json.dumps({"key": key, "url": f"http://127.0.0.1/{video.name}"}).encode()
            tar.add(video, f"{key}.mp4")
            info = tarfile.TarInfo(f"{key}.json")
            info.size = len(record)
            tar.addfile(info, io.BytesIO(record))


def run_ffmpeg(videos: list[Path], folder: Path, side: Side) -> None:
    folder.mkdir()
    before = cpu(resource.RUSAGE_CHILDREN)
    for video in videos:
        subprocess.run(ffmpeg_argv(video, folder / video.name), check=True, timeout=600)
    side.ffmpeg += cpu(resource.RUSAGE_CHILDREN) - before


def run_v2d(tar: Path, job: JobConfig, side: Side, profile: cProfile.Profile | None) -> int:
    """``process_shard`` of one tar; its successful samples."""
    spec = ShardSpec(shard_id=int(tar.stem), input_path=str(tar), row_count=0)
    own, children = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
    if profile is not None:
        profile.enable()
    result = process_shard(spec, job)
    if profile is not None:
        profile.disable()
    side.own += cpu(resource.RUSAGE_SELF) - own
    side.ffmpeg += cpu(resource.RUSAGE_CHILDREN) - children
    return result.stats().successes


def subset_job(tars: Path, output: Path, work: Path) -> JobConfig:
    return JobConfig(
        url_list=str(tars),
        output_folder=str(output),
        output_format="webdataset",
        input_format="webdataset",
        stage="subset",
        incremental_mode="overwrite",
        tmp_dir=str(work),
        config=load_config({"subsampling": SUBSAMPLING}, {}),
    )


def measure(args: argparse.Namespace, tmp: Path) -> tuple[Side, Side, float, cProfile.Profile | None]:
    """Both sides over every tar, alternating which goes first; and the warm-up shard's own CPU."""
    videos = make_videos(Path(args.media), args.unique, seconds=10.0, width=640, height=360)
    chosen = [videos[i % len(videos)] for i in range(args.videos)]
    groups = [chosen[i : i + args.per_shard] for i in range(0, len(chosen), args.per_shard)]
    tars = tmp / "tars"
    tars.mkdir()
    for shard_id, group in enumerate(groups, start=1):
        write_tar(tars / f"{shard_id:05d}.tar", shard_id, group)
    write_tar(tmp / "00000.tar", 0, chosen[:1])
    job = subset_job(tars, tmp / "v2d", tmp)
    warm = Side()
    run_v2d(tmp / "00000.tar", job, warm, None)
    ffmpeg, v2d = Side(), Side()
    profile = cProfile.Profile(time.process_time) if args.profile else None
    for index, group in enumerate(groups, start=1):
        tar = tars / f"{index:05d}.tar"
        sides = [
            functools.partial(run_ffmpeg, group, tmp / f"ffmpeg_{index}", ffmpeg),
            functools.partial(run_v2d, tar, job, v2d, profile),
        ]
        for side in sides if index % 2 else sides[::-1]:
            side()
    return ffmpeg, v2d, warm.own, profile


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--per-shard", type=int, default=25)
    parser.add_argument("--unique", type=int, default=20, help="distinct generated files behind the videos")
    parser.add_argument("--media", default="benchmark/work/media_640x360_10s")
    parser.add_argument("--profile", action="store_true", help="cProfile v2d's side; print its top functions")
    args = parser.parse_args()

    print(f"uptime: {uptime()}")
    with tempfile.TemporaryDirectory(prefix="v2d-overhead-") as name:
        ffmpeg, v2d, warm, profile = measure(args, Path(name))
    count = args.videos
    print(f"\n{count} videos, {args.per_shard} per tar, one lane; CPU seconds per video:\n")
    print("| side | ffmpeg processes | own process | total |")
    print("|---|---|---|---|")
    for label, side in (("bare ffmpeg", ffmpeg), ("v2d process_shard", v2d)):
        print(f"| {label} | {side.ffmpeg / count:.4f} | {side.own / count:.4f} | {side.total / count:.4f} |")
    print(f"\nv2d / bare ffmpeg, total CPU per video: {v2d.total / ffmpeg.total:.3f}")
    print(f"  its ffmpeg processes / bare ffmpeg: {v2d.ffmpeg / ffmpeg.ffmpeg:.3f}")
    share = v2d.own / ffmpeg.total
    print(f"  its own work: {v2d.own / count * 1000:.1f} ms per video ({share:.1%} of bare ffmpeg)")
    print(f"warm-up shard (one video, one-time imports): {warm:.2f} CPU-s of its own")
    if profile is not None:
        print("\nv2d's own functions by their own CPU time:")
        stats = pstats.Stats(profile)
        stats.sort_stats("tottime").print_stats(20)
    print(f"uptime: {uptime()}")


if __name__ == "__main__":
    main()
