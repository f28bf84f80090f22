"""Cut detection + clipping and optical flow end to end: v2d against video2dataset 1.3.0 itself.

Both tools run the same command and the same config file, each with its own interpreter
(``--v130-python``: a venv with ``video2dataset==1.3.0`` installed), in alternating rounds of
one run. Inputs: ``--unique`` generated 10 s 640x360 30 fps H.264/AAC videos of four scenes
whose cut frames are known (scene lengths and sources vary between videos), behind
``--videos`` urls served from a separate process on 127.0.0.1.

- cuts: the download stage with a 1.3.0 user's cut-and-clip config (``CutDetectionSubsampler``
  with ``cuts_are_clips``, ContentDetector threshold 27, min_scene_len 15;
  ``ClippingSubsampler`` at 1.3.0's default precision, which stream-copies).
- flow: the ``optical_flow`` stage over an existing webdataset (written once, not timed, by
  1.3.0's download, as a 1.3.0 user has it), with 1.3.0's ``optical_flow`` config (cv2
  Farneback, fp16, 2 fps, frames resized to a 16-pixel short side through
  ``reading.dataloader_args``).

``storage`` and ``distribution`` are set the same for both: ``--per-shard`` samples per
shard, ``--processes`` processes x ``--threads`` threads, multiprocessing. Reported per
round and side: wall seconds, videos/s, CPU seconds per video (this process and every
descendant; it is made a child subreaper so daemonised workers are counted too) and the
load average before the run; then the median ratio v2d / 1.3.0 of videos/s.

Accuracy: each tool's ``cuts_original_fps`` scenes against the true cut frames (found at the
exact frame, within one frame, false cuts), and the clips each wrote; for flow, each video's
``mean_optical_flow_magnitude`` from both, with the largest relative difference (tolerance
``FLOW_TOLERANCE``).

``--floor`` prints, instead of the rounds, the CPU per video of what no analysis of these
videos avoids (decoding every frame: each is a reference for the next) next to v2d's steps.

    pip install -e ".[bench]"
    python -m venv /work/venvs/v130 && /work/venvs/v130/bin/pip install video2dataset==1.3.0
    # (how it was installed and patched where it crashes: benchmark/RESULTS.md)
    python benchmark/analysis_end_to_end.py --videos 200 --rounds 2
    python benchmark/analysis_end_to_end.py --floor
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import psutil
import yaml
from download_throughput import start_server  # benchmark/ is on sys.path when run as a script
from downsample_vs_ffmpeg import become_subreaper, cpu_seconds, uptime

from v2d_core.testing.scenes import make_scene_video

FPS = 30
SOURCES = ["testsrc2", "testsrc,scroll=horizontal=0.01", "smptehdbars,scroll=vertical=0.02", "rgbtestsrc"]
# Scene lengths in seconds (whole frames at 30 fps), one pattern per video in turn; each sums to 10.
SCENE_SECONDS = [(2.5, 2.5, 2.5, 2.5), (3.0, 2.0, 3.0, 2.0), (2.0, 3.5, 1.5, 3.0), (4.0, 2.0, 2.0, 2.0)]
FLOW_TOLERANCE = 0.10  # largest relative difference of a video's mean flow magnitude accepted
CUTS_SUBSAMPLING = {
    "CutDetectionSubsampler": {
        "cuts_are_clips": True,
        "args": {"cut_detection_mode": "all", "framerates": None, "threshold": 27, "min_scene_len": 15},
    },
    "ClippingSubsampler": {"args": {"min_length": 1.0, "max_length": 20.0, "max_length_strategy": "all"}},
}
FLOW_SUBSAMPLING = {
    "OpticalFlowSubsampler": {"args": {"detector": "cv2", "detector_args": None, "dtype": "fp16"}}
}
FLOW_READING = {
    "dataloader_args": {
        "resize_size": 16,
        "decoder_kwargs": {"n_frames": None, "fps": 2, "num_threads": 8, "return_bytes": True},
    },
}


@dataclass(frozen=True, slots=True)
class Video:
    """One generated input: its file and its true cut frames."""

    path: Path
    cuts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run of one tool: wall and CPU seconds, load before it, and what it wrote."""

    wall: float
    cpu: float
    load: float
    samples: list[dict[str, Any]]


def make_inputs(folder: Path, count: int) -> list[Video]:
    videos = []
    for index in range(count):
        order = SOURCES[index % len(SOURCES) :] + SOURCES[: index % len(SOURCES)]
        lengths = SCENE_SECONDS[(index // len(SOURCES)) % len(SCENE_SECONDS)]
        path = folder / f"scenes_{index:03d}.mp4"
        if not path.exists():
            make_scene_video(
                path, list(zip(order, lengths, strict=True)), width=640, height=360, fps=FPS, gop=2 * FPS
            )
        cuts = tuple(round(seconds * FPS) for seconds in accumulate(lengths[:-1]))
        videos.append(Video(path, cuts))
    return videos


def write_config(
    path: Path, subsampling: dict[str, Any], args: argparse.Namespace, reading: dict[str, Any]
) -> Path:
    config = {
        "subsampling": subsampling,
        "reading": {
            "yt_args": {"download_size": 360, "yt_metadata_args": None},
            "timeout": 60,
            "sampler": None,
        }
        | reading,
        "storage": {
            "number_sample_per_shard": args.per_shard,
            "oom_shard_count": 5,
            "captions_are_subtitles": False,
        },
        "distribution": {
            "processes_count": args.processes,
            "thread_count": args.threads,
            "subjob_size": 1000,
            "distributor": "multiprocessing",
        },
    }
    path.write_text(yaml.safe_dump(config))
    return path


def command(python: str, *options: str) -> list[str]:
    """The ``video2dataset`` command installed beside ``python``."""
    return [str(Path(python).parent / "video2dataset"), *options]


def read_samples(output: Path) -> list[dict[str, Any]]:
    """Every sample's json from the output tars."""
    samples = []
    for tar_path in sorted(output.glob("*.tar")):
        if tar_path.stat().st_size == 0:
            continue
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    samples.append(json.load(tar.extractfile(member)))  # type: ignore[arg-type]
    return samples


def reap_descendants(keep: int, deadline: float = 60.0) -> None:
    """Wait for every child but ``keep`` (the server) to exit: adopted daemonised workers included."""
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        children = [child.pid for child in psutil.Process().children() if child.pid != keep]
        if not children:
            return
        for pid in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    print("warning: some descendants did not exit; their CPU time is not counted")


def run_tool(argv: list[str], output: Path, server_pid: int) -> Run:
    """Run one tool's command; its wall and CPU seconds and the samples it wrote."""
    env = {**os.environ, "V2D_ALLOW_PRIVATE_NETWORKS": "1"}  # v2d's address guard: the server is local
    load = os.getloadavg()[0]
    cpu, started = cpu_seconds(), time.perf_counter()
    done = subprocess.run(
        argv, cwd=output.parent, env=env, capture_output=True, text=True, timeout=3600, check=False
    )
    wall = time.perf_counter() - started
    reap_descendants(server_pid)
    samples = read_samples(output) if done.returncode == 0 else []
    if not any(sample.get("status") == "success" for sample in samples):
        raise SystemExit(f"{shlex.join(argv)} wrote no sample:\n{done.stderr[-3000:]}")
    return Run(wall, cpu_seconds() - cpu, load, samples)


def cut_score(samples: list[dict[str, Any]], truth: dict[str, tuple[int, ...]]) -> str:
    found: dict[str, list[int]] = {}
    clips = 0
    for sample in samples:
        if sample.get("status") != "success":
            continue
        clips += 1
        scenes = sample["cuts"]["cuts_original_fps"]
        found[sample["url"]] = [start for start, _ in scenes][1:]
    exact = near = false = expected = 0
    for url, cuts in truth.items():
        got = found.get(url, [])
        expected += len(cuts)
        exact += len(set(got) & set(cuts))
        near += sum(any(abs(g - c) <= 1 for g in got) for c in cuts)
        false += sum(all(abs(g - c) > 1 for c in cuts) for g in got)
    return (
        f"{len(found)}/{len(truth)} videos, {clips} clips; true cuts at the exact frame {exact}/{expected}, "
        f"within 1 frame {near}/{expected}; false cuts {false}"
    )


def flow_values(samples: list[dict[str, Any]]) -> dict[str, float]:
    return {s["key"]: s["mean_optical_flow_magnitude"] for s in samples if s.get("status") == "success"}


def floor(videos: list[Video]) -> None:
    """CPU seconds per video of the steps no analysis avoids, in this process (one at a time)."""
    import av

    from v2d_core.ffmpeg_binary import ffmpeg_exe
    from v2d_core.sample import Sample
    from v2d_core.subsamplers.cut_detection import detect_cuts
    from v2d_core.subsamplers.optical_flow import OpticalFlowSubsampler
    from v2d_core.subsamplers.settings import ClippingArgs, CutDetectionArgs, OpticalFlowArgs
    from v2d_core.subsamplers.transcode import TranscodeSubsampler

    def decode_every_frame(video: Video) -> None:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for _ in container.decode(stream):
                pass

    def ffmpeg_decode(video: Video) -> None:
        argv = [ffmpeg_exe(), "-nostdin", "-v", "error", "-threads", "1", "-i", str(video.path)]
        subprocess.run([*argv, "-an", "-f", "null", "-"], check=True)

    def ffmpeg_start(video: Video) -> None:
        subprocess.run([ffmpeg_exe(), "-version"], check=True, capture_output=True)

    def cuts(video: Video) -> None:
        detect_cuts(video.path, CutDetectionArgs())

    def clips(video: Video) -> None:
        bounds = [0, *video.cuts, 10 * FPS]
        spans = [[start / FPS, end / FPS] for start, end in itertools.pairwise(bounds)]
        sample = Sample(key="k", url="u", streams={"video": video.path}, metadata={"clips": spans})
        with tempfile.TemporaryDirectory() as folder:
            TranscodeSubsampler(clipping=ClippingArgs(min_length=1.0))(sample, Path(folder))

    def flow(video: Video) -> None:
        subsampler = OpticalFlowSubsampler(OpticalFlowArgs(fps=2, downsample_size=16))
        with tempfile.TemporaryDirectory() as folder:
            subsampler(Sample(key="k", url="u", streams={"video": video.path}), Path(folder))

    steps = {
        "decode every frame, in process (PyAV, 1 thread)": decode_every_frame,
        "decode every frame, an ffmpeg process (-f null)": ffmpeg_decode,
        "start an ffmpeg process (-version)": ffmpeg_start,
        "v2d cut detection (decode, 64x36 read off the planes, scores)": cuts,
        "v2d clipping of the 4 scenes (stream copies cut in the worker)": clips,
        "v2d optical flow (decode, 28x16 at 2 fps, Farneback, .npy)": flow,
    }
    for what, step in steps.items():
        step(videos[0])  # imports and caches warm
        started = cpu_seconds()
        for video in videos:
            step(video)
        print(f"floor: {what}: {(cpu_seconds() - started) / len(videos):.4f} cpu-s/video", flush=True)


@dataclass(frozen=True, slots=True)
class Bench:
    """What every run of one benchmark shares."""

    tmp: Path
    args: argparse.Namespace
    pythons: dict[str, str]  # side -> the interpreter whose ``video2dataset`` command runs
    truth: dict[str, tuple[int, ...]]  # url -> true cut frames
    server_pid: int


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--unique", type=int, default=20, help="distinct generated files behind the urls")
    parser.add_argument("--per-shard", type=int, default=25)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workloads", default="cuts,flow")
    parser.add_argument("--v130-python", default="/work/venvs/v130/bin/python")
    parser.add_argument("--media", default="benchmark/work/scenes_640x360_10s_30fps_varied")
    parser.add_argument("--floor", action="store_true", help="only the per-video floor figures, no rounds")
    args = parser.parse_args()
    if not become_subreaper():
        print("warning: cannot become a child subreaper; daemonised workers' CPU is not counted")
    print(f"$ python benchmark/analysis_end_to_end.py {shlex.join(sys.argv[1:])}")
    print(f"uptime: {uptime()}", flush=True)
    videos = make_inputs(Path(args.media), args.unique)
    if args.floor:
        floor(videos)
        return
    with tempfile.TemporaryDirectory(prefix="v2d-analysis-") as name:
        tmp = Path(name)
        # 1.3.0 fetches a url directly only when it ends in a video extension: one name per row
        served = tmp / "served"
        served.mkdir()
        for row in range(args.videos):
            shutil.copyfile(videos[row % len(videos)].path, served / f"row_{row:05d}.mp4")
        server, base_url = start_server(served)
        try:
            urls = [f"{base_url}/files/row_{row:05d}.mp4" for row in range(args.videos)]
            (tmp / "urls.txt").write_text("\n".join(urls) + "\n")
            truth = {url: videos[row % len(videos)].cuts for row, url in enumerate(urls)}
            pythons = {"1.3.0": args.v130_python, "v2d": sys.executable}
            bench = Bench(tmp, args, pythons, truth, server.pid)
            results = {workload: measure(workload, bench) for workload in args.workloads.split(",")}
        finally:
            server.terminate()
            server.wait()
    print(f"\nuptime: {uptime()}")
    for workload, runs in results.items():
        report(workload, runs, args)


def prepare(workload: str, bench: Bench) -> tuple[Path, list[str]]:
    """The config and the command options of ``workload``; the flow stage's input, a webdataset
    written by 1.3.0's download (as a 1.3.0 user has it), is made here, untimed."""
    tmp, args = bench.tmp, bench.args
    if workload == "cuts":
        config = write_config(tmp / "cuts.yaml", CUTS_SUBSAMPLING, args, {})
        return config, [f"--url_list={tmp / 'urls.txt'}", "--input_format=txt"]
    download = tmp / "flow_input"
    plain = write_config(tmp / "download.yaml", {}, args, {})
    argv = command(bench.pythons["1.3.0"], f"--url_list={tmp / 'urls.txt'}", "--input_format=txt")
    argv += [f"--output_folder={download}", "--output_format=webdataset", f"--config={plain}"]
    run_tool(argv, download, bench.server_pid)
    shards = sorted(download.glob("*.tar"))
    url_list = f"{download}/{{{shards[0].stem}..{shards[-1].stem}}}.tar"
    config = write_config(tmp / "flow.yaml", FLOW_SUBSAMPLING, args, FLOW_READING)
    return config, [f"--url_list={url_list}", "--input_format=webdataset", "--stage=optical_flow"]


def measure(workload: str, bench: Bench) -> list[dict[str, Run]]:
    """``--rounds`` rounds of both tools, the order alternating; accuracy from the last round."""
    config, options = prepare(workload, bench)
    videos = bench.args.videos
    runs: list[dict[str, Run]] = []
    for index in range(bench.args.rounds):
        order = list(bench.pythons) if index % 2 == 0 else list(reversed(bench.pythons))
        runs.append({})
        for side in order:
            output = bench.tmp / f"{workload}_{side}_{index}"
            argv = command(bench.pythons[side], *options, f"--output_folder={output}")
            argv += ["--output_format=webdataset", f"--config={config}"]
            runs[-1][side] = run_tool(argv, output, bench.server_pid)
            subprocess.run(["rm", "-rf", str(output)], check=True)
        parts = [
            f"{side} {r.wall:.1f}s {videos / r.wall:.2f} videos/s {r.cpu / videos:.3f} cpu-s/video "
            f"(load {r.load:.2f})"
            for side, r in runs[-1].items()
        ]
        print(f"{workload} round {index + 1}: {'  '.join(parts)}", flush=True)
    shown = [*options, "--output_folder=OUT", "--output_format=webdataset", f"--config={config}"]
    print(f"  command (both tools): {shlex.join(['video2dataset', *shown])}")
    print(f"  config: {json.dumps(yaml.safe_load(config.read_text()))}")
    if workload == "cuts":
        for side in bench.pythons:
            print(f"cut accuracy {side}: {cut_score(runs[-1][side].samples, bench.truth)}")
    else:
        compare_flow(runs[-1])
    return runs


def compare_flow(last: dict[str, Run]) -> None:
    theirs, ours = flow_values(last["1.3.0"].samples), flow_values(last["v2d"].samples)
    keys = sorted(set(theirs) & set(ours))
    print(f"flow: {len(theirs)} videos from 1.3.0, {len(ours)} from v2d, {len(keys)} in both")
    if keys:
        differences = [abs(ours[k] - theirs[k]) / theirs[k] for k in keys if theirs[k]]
        ratio = statistics.median(ours[k] / theirs[k] for k in keys if theirs[k])
        worst = max(differences) if differences else 0.0
        verdict = "within" if worst <= FLOW_TOLERANCE else "OUTSIDE"
        print(
            f"mean_optical_flow_magnitude v2d / 1.3.0: median {ratio:.3f}; largest difference {worst:.1%} "
            f"({verdict} the {FLOW_TOLERANCE:.0%} tolerance)"
        )


def report(workload: str, runs: list[dict[str, Run]], args: argparse.Namespace) -> None:
    ratios = [r["1.3.0"].wall / r["v2d"].wall for r in runs]
    cpu = {side: statistics.median(r[side].cpu for r in runs) / args.videos for side in ("1.3.0", "v2d")}
    rate = {side: statistics.median(args.videos / r[side].wall for r in runs) for side in ("1.3.0", "v2d")}
    print(
        f"{workload}: 1.3.0 {rate['1.3.0']:.2f} videos/s {cpu['1.3.0']:.3f} cpu-s/video; "
        f"v2d {rate['v2d']:.2f} videos/s {cpu['v2d']:.3f} cpu-s/video; "
        f"v2d / 1.3.0 videos/s per round {', '.join(f'{x:.2f}' for x in ratios)} "
        f"(median {statistics.median(ratios):.2f}, target >= 3); CPU ratio {cpu['1.3.0'] / cpu['v2d']:.2f}"
    )


if __name__ == "__main__":
    main()
