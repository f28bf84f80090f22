"""The downsample workload end to end through ``video2dataset(stage="subset")`` against bare ffmpeg.

Workload: scale to 256 px high (the short side of a landscape video; ``ResolutionSubsampler``
``video_size: 256, resize_mode: scale``) and resample to 8 fps (``FrameSubsampler``).

Setup (not timed): N urls over ``--unique`` generated 10 s 640x360 25 fps videos (H.264 + AAC)
are served from a separate process on 127.0.0.1 and downloaded by the v2d CLI into
webdataset tars of ``--per-shard`` samples; every video is also extracted from those tars,
so both sides read the same bytes.

Measured, back to back in each round (the order rotates between rounds):

- v2d: the ``video2dataset`` CLI (``video2dataset(...)`` via python-fire) with
  ``--stage=subset --input_format=webdataset`` and ``--processes_count`` workers, in a fresh
  interpreter as a user runs it: imports, worker start, reading the tars, probing, one fused
  ffmpeg per sample, writing tars, parquet and stats. A fresh process per round, because
  workers forked from a forkserver that an earlier call left running start for free.
- ffmpeg: the cheapest command that produces the same deliverable (the same filters,
  libx264 at ffmpeg's defaults, which v2d keeps: preset medium, crf 23, yuv420p; the
  audio stream-copied, since nothing asks to change it), ``--processes`` ffmpeg
  processes at a time over the extracted files.

The first video's outputs are compared byte for byte (the same deliverable, the same bytes).
Reported per side: wall time, videos/s and CPU seconds per video (this process and all its
descendants; it is made a child subreaper so v2d's orphaned forkserver is reaped and
counted); the ratio v2d/ffmpeg of videos/s per round and its median; the load average
before each run. Where v2d's wall time goes: ``lane s/video`` is the serial time per video
inside one of the parallel lanes (ffmpeg: each process's wall time; v2d: each shard's
duration from its ``_stats.json``, divided by its videos), ``startup`` the time from the
command until the first shard started, ``outside lanes`` what the lanes do not explain
(wall - lane time / processes: startup, imbalance between lanes, teardown).

    pip install -e ".[bench]"
    python benchmark/downsample_vs_ffmpeg.py --videos 40 --rounds 5
    python benchmark/downsample_vs_ffmpeg.py --candidate DIR   # also DIR/v2d_core, a patched copy
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import yaml
from download_throughput import start_server  # benchmark/ is on sys.path when run as a script

from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.shards import ShardLayout
from v2d_core.shards.dataset import shard_names
from v2d_core.shards.reader import ShardReader
from v2d_core.testing.media import make_videos

SHORT_SIDE = 256
FRAME_RATE = 8
SUBSAMPLING = {
    "ResolutionSubsampler": {"args": {"video_size": SHORT_SIDE, "resize_mode": "scale"}},
    "FrameSubsampler": {"args": {"frame_rate": FRAME_RATE}},
}
# The limit for SUBSAMPLING: fps, then scale, ffmpeg's default video encoder for mp4 spelled
# out, and the audio copied as it is (no audio transform is asked for).
FFMPEG_ARGS = (
    "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", "{input}",
    "-vf", f"fps=fps={FRAME_RATE},scale=-2:{SHORT_SIDE}",
    "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p",
    "-c:a", "copy", "{output}",
)  # fmt: skip
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


@dataclass(frozen=True, slots=True)
class Lanes:
    """What the parallel lanes did: summed busy seconds, and when the first unit of work started."""

    busy: float
    first_start: float


@dataclass(frozen=True, slots=True)
class Timing:
    """One timed run: wall and CPU seconds (this process and its children), load average, lanes."""

    wall: float
    cpu: float
    load: float
    busy: float
    startup: float


def cpu_seconds() -> float:
    """User + system CPU of this process and of every descendant it has reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def become_subreaper() -> bool:
    """Adopt orphaned descendants (v2d's forkserver outlives the CLI) so their CPU can be counted."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(deadline: float = 30.0) -> None:
    """Wait for adopted descendants to exit (this process has no other children between runs)."""
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)
    print("warning: some descendants did not exit; their CPU time is not counted")


def timed(work: Callable[[], Lanes]) -> Timing:
    load = os.getloadavg()[0]
    cpu, started, epoch = cpu_seconds(), time.perf_counter(), time.time()
    lanes = work()
    wall = time.perf_counter() - started
    reap_orphans()
    return Timing(wall, cpu_seconds() - cpu, load, lanes.busy, lanes.first_start - epoch)


def cli(*options: str) -> list[str]:
    return [sys.executable, "-m", "v2d_core.cli", *options, "--show_progress=False"]


def download(base_url: str, videos: list[Path], args: argparse.Namespace, folder: Path) -> Path:
    """The tars the subset stage reads: v2d's own download of ``args.videos`` urls."""
    urls = folder / "urls.txt"
    lines = [f"{base_url}/files/{videos[i % len(videos)].name}?row={i}" for i in range(args.videos)]
    urls.write_text("\n".join(lines) + "\n")
    output = folder / "downloaded"
    command = cli(
        f"--url_list={urls}",
        "--input_format=txt",
        f"--output_folder={output}",
        "--output_format=webdataset",
        f"--number_sample_per_shard={args.per_shard}",
        f"--processes_count={args.processes}",
        "--thread_count=8",
        "--allow_private_networks=True",  # the server is on 127.0.0.1
    )
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    return output


def extract_videos(tars: Path, folder: Path) -> list[Path]:
    """Every ``.mp4`` member of the tars as a file: the baseline's inputs, byte for byte v2d's."""
    folder.mkdir()
    paths = []
    for tar_path in sorted(tars.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".mp4"):
                    path = folder / member.name
                    path.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
                    paths.append(path)
    return paths


def ffmpeg_argv(source: Path, target: Path) -> list[str]:
    return [ffmpeg_exe(), *(a.format(input=source, output=target) for a in FFMPEG_ARGS)]


def run_ffmpeg(inputs: list[Path], output: Path, processes: int) -> Lanes:
    """The baseline: one ffmpeg per file, ``processes`` at a time."""
    output.mkdir()

    def one(source: Path) -> tuple[float, float]:
        started, clock = time.time(), time.perf_counter()
        subprocess.run(ffmpeg_argv(source, output / source.name), check=True, timeout=600)
        return started, time.perf_counter() - clock

    with ThreadPoolExecutor(processes) as pool:
        runs = list(pool.map(one, inputs))
    return Lanes(busy=sum(seconds for _, seconds in runs), first_start=min(start for start, _ in runs))


def v2d_command(tars: Path, output: Path, config: Path, processes: int) -> list[str]:
    return cli(
        f"--url_list={tars}",
        "--input_format=webdataset",
        "--stage=subset",
        f"--output_folder={output}",
        "--output_format=webdataset",
        f"--config={config}",
        f"--processes_count={processes}",
        "--incremental_mode=overwrite",
    )


def run_v2d(command: list[str], output: Path, expected: int, pythonpath: str | None = None) -> Lanes:
    """Run the CLI (``v2d_core`` from ``pythonpath`` when given); the lanes from the shards' stats."""
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    # Run outside the checkout: ``python -m`` puts the working folder first on sys.path.
    run = functools.partial(subprocess.run, cwd=output.parent, env=env, timeout=1800, check=True)
    run(command, stdout=subprocess.DEVNULL)
    layouts = [ShardLayout(str(output), name, "webdataset") for name in shard_names(str(output))]
    stats = [ShardReader(layout).stats() for layout in layouts]
    successes = sum(shard.successes for shard in stats)
    if successes != expected:
        raise SystemExit(f"v2d subset wrote {successes} of {expected} videos: {stats}")
    return Lanes(
        busy=sum(shard.duration for shard in stats),
        first_start=min(shard.start_time for shard in stats),
    )


def describe(path: Path) -> str:
    """Codec, size, rate and frame count of the video stream, and the audio codec and rate."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        sound = f"{audio.codec_context.name} {audio.codec_context.sample_rate} Hz" if audio else "no audio"
        head = f"{video.codec_context.name} {video.codec_context.width}x{video.codec_context.height}"
        rate = video.average_rate
        frames = sum(1 for _ in container.decode(video))
    return f"{head} {rate} fps {frames} frames, {sound}"


def first_member(tar_path: Path, ext: str, folder: Path) -> Path:
    with tarfile.open(tar_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f".{ext}"))
        path = folder / f"v2d_{member.name}"
        path.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return path


def show_round(index: int, timings: dict[str, Timing], count: int) -> None:
    parts = [
        f"{side} {t.wall:.2f}s {count / t.wall:.2f} videos/s {t.cpu / count:.2f} cpu-s/video "
        f"(load {t.load:.2f})"
        for side, t in timings.items()
    ]
    ffmpeg = timings["ffmpeg"].wall
    ratios = [f"{side}/ffmpeg {ffmpeg / t.wall:.3f}" for side, t in timings.items() if side != "ffmpeg"]
    print(f"round {index + 1}: {'  '.join(parts)}  ratio {' '.join(ratios)}", flush=True)


def rounds(tars: Path, inputs: list[Path], args: argparse.Namespace, tmp: Path) -> list[dict[str, Timing]]:
    """``args.rounds`` rounds of every side; the order rotates from round to round."""
    results = []
    config = write_config(tmp / "downsample.yaml")
    pythonpaths = {"v2d": None, **({"candidate": args.candidate} if args.candidate else {})}
    for index in range(args.rounds):
        outputs = {side: tmp / f"{side}_{index}" for side in ("ffmpeg", *pythonpaths)}
        commands = {side: v2d_command(tars, outputs[side], config, args.processes) for side in pythonpaths}
        work = {
            side: functools.partial(run_v2d, commands[side], outputs[side], len(inputs), path)
            for side, path in pythonpaths.items()
        }
        work["ffmpeg"] = functools.partial(run_ffmpeg, inputs, outputs["ffmpeg"], args.processes)
        order = list(work)[index % len(work) :] + list(work)[: index % len(work)]
        timings = {side: timed(work[side]) for side in order}
        if index == 0:
            ours, theirs = (
                first_member(outputs["v2d"] / "00000.tar", "mp4", tmp),
                outputs["ffmpeg"] / inputs[0].name,
            )
            print("v2d output:   ", describe(ours))
            print("ffmpeg output:", describe(theirs))
            print("same bytes:   ", ours.read_bytes() == theirs.read_bytes())
        results.append(timings)
        show_round(index, timings, len(inputs))
        for folder in outputs.values():
            subprocess.run(["rm", "-rf", str(folder)], check=True)
    return results


def write_config(path: Path) -> Path:
    path.write_text(yaml.safe_dump({"subsampling": SUBSAMPLING}))
    return path


def report(results: list[dict[str, Timing]], count: int, tars: Path, processes: int) -> None:
    def median(side: str, value: Callable[[Timing], float]) -> float:
        return statistics.median(value(r[side]) for r in results)

    print(
        "\n| side | median wall s | videos/s | cpu-s/video | lane s/video | startup s "
        "| outside lanes s | load before each run |"
    )
    print("|---|---|---|---|---|---|---|---|")
    sides = ["ffmpeg", *(side for side in results[0] if side != "ffmpeg")]
    for side in sides:
        loads = ", ".join(f"{r[side].load:.2f}" for r in results)
        wall = median(side, lambda t: t.wall)
        print(
            f"| {side} | {wall:.2f} | {count / wall:.2f} | {median(side, lambda t: t.cpu) / count:.3f} "
            f"| {median(side, lambda t: t.busy) / count:.3f} | {median(side, lambda t: t.startup):.2f} "
            f"| {median(side, lambda t: t.wall - t.busy / processes):.2f} | {loads} |"
        )
    for side in sides[1:]:
        ratios = [r["ffmpeg"].wall / r[side].wall for r in results]
        print(f"\n{side}/ffmpeg videos/s per round: {', '.join(f'{r:.3f}' for r in ratios)}")
        print(f"  median: {statistics.median(ratios):.3f} (target >= 0.9 at N = 200, >= 0.95 at N = 1000)")
        for what, value in (("lane time per video", "busy"), ("CPU per video", "cpu")):
            ratio = statistics.median(getattr(r["ffmpeg"], value) / getattr(r[side], value) for r in results)
            print(f"  median ffmpeg/{side} ratio of {what}: {ratio:.3f}")
        extra = statistics.median(r[side].cpu / r["ffmpeg"].cpu - 1 for r in results)
        print(f"  {side} CPU per video over ffmpeg's: {extra:+.1%} (target within 5 %)")
    print("\ncommands:")
    command = v2d_command(tars, Path("<out>"), Path("<config>"), processes)
    print(f"  v2d:    {shlex.join(command)}")
    print(f"          with <config>: {json.dumps({'subsampling': SUBSAMPLING})}")
    argv = shlex.join(ffmpeg_argv(Path("<in>.mp4"), Path("<out>.mp4")))
    print(f"  ffmpeg: {processes} at a time of: {argv}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--unique", type=int, default=20, help="distinct generated files behind the urls")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--per-shard", type=int, default=10, help="samples per tar (a tar is a shard)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--media", default="benchmark/work/media_640x360_10s")
    parser.add_argument(
        "--candidate",
        help="also run v2d with this folder first on PYTHONPATH (a patched copy of v2d_core), "
        "to measure a change against the current code in the same rounds",
    )
    args = parser.parse_args()

    if not become_subreaper():
        print("warning: cannot become a child subreaper; v2d's CPU time misses its forkserver")
    media = Path(args.media)
    videos = make_videos(media, args.unique, seconds=10.0, width=640, height=360)
    print(f"uptime: {uptime()}")
    with tempfile.TemporaryDirectory(prefix="v2d-bench-", dir=os.environ.get("TMPDIR")) as name:
        tmp = Path(name)
        server, base_url = start_server(media)
        try:
            tars = download(base_url, videos, args, tmp)
        finally:
            server.terminate()
            server.wait()
        reap_orphans()
        inputs = extract_videos(tars, tmp / "inputs")
        print(
            f"videos={len(inputs)} tars={len(list(tars.glob('*.tar')))} processes={args.processes} "
            f"rounds={args.rounds} input: {describe(inputs[0])}",
            flush=True,
        )
        results = rounds(tars, inputs, args, tmp)
        report(results, len(inputs), tars, args.processes)
    print(f"uptime: {uptime()}")


if __name__ == "__main__":
    main()
