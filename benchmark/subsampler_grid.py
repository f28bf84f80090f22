"""Throughput of each subsampler setting on local files: samples/s and frames/s, like
video2dataset 1.3.0's ``benchmark_subsamplers.py`` grid.

Each setting is a ``subsampling`` section in video2dataset's YAML shape; its chain is built
with ``build_subsamplers(JobConfig(...))`` and every input goes through
``apply_subsamplers`` in this process, one sample at a time, so only the transform's
cost is timed (no fetching, no tar or parquet writing). Inputs are ``--videos`` generated
H.264/AAC mp4s of ``--seconds`` at ``--size`` and 25 fps (v2d's default download size is
360p), each four scenes of equal length, so cut detection has real cuts and the four
clip spans (1.3.0's ``make_fake_clips``: the duration split evenly) start on keyframes.
Audio settings also get the audio as its own ``.m4a`` stream.

Every round runs every setting once over all inputs, after one baseline: ffmpeg decoding
the same files to null. Figures are medians over the rounds: samples/s and (input video)
frames/s from wall time, CPU seconds per sample (this process and its ffmpeg children,
so other users' load is mostly excluded), and the wall time relative to the decode
baseline of the same round (``x decode``, the ratio least sensitive to a busy machine).
The 1-min load average is noted at each measurement.

    python benchmark/subsampler_grid.py                 # default grid, under 2 minutes
    python benchmark/subsampler_grid.py --only clipping --rounds 5
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from v2d_core.config import Config
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.job import JobConfig
from v2d_core.sample import Sample
from v2d_core.subsamplers.chain import apply_subsamplers, build_subsamplers
from v2d_core.testing.scenes import make_scene_video

SCENES = ("testsrc2", "smptebars,scroll=horizontal=0.02", "color=c=red", "testsrc")
CLIP_COUNT = 4


@dataclass(frozen=True, slots=True)
class Setting:
    """One grid cell: a ``subsampling`` section, and what the sample must carry for it."""

    group: str
    name: str
    subsampling: Mapping[str, Any]
    clips: bool = False
    audio: bool = False


@dataclass(frozen=True, slots=True)
class Input:
    """One generated video, its audio as a separate file, its frame count and clip spans."""

    video: Path
    audio: Path
    frames: int
    spans: list[list[float]]


@dataclass(slots=True)
class Result:
    """A setting's measurements over the rounds."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    vs_decode: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    check: str = ""


def _args(name: str, **args: Any) -> dict[str, Any]:
    return {name: {"args": args}}


def grid() -> list[Setting]:
    """The settings of the grid, grouped by subsampler."""
    settings = [
        Setting(
            "resolution", f"{size} {mode}", _args("ResolutionSubsampler", video_size=size, resize_mode=mode)
        )
        for size in (64, 128, 224, 360)
        for mode in ("scale", "scale,crop,pad")
    ]
    settings += [
        Setting("frame", f"{rate} fps", _args("FrameSubsampler", frame_rate=rate)) for rate in (1, 5, 10)
    ]
    settings.append(Setting("frame", "keyframe", _args("FrameSubsampler", downsample_method="keyframe")))
    settings += [
        Setting("audio", f"{rate} Hz", _args("AudioRateSubsampler", sample_rate=rate), audio=True)
        for rate in (16000, 44100)
    ]
    settings += [
        Setting("clipping", f"{CLIP_COUNT} spans {p}", _args("ClippingSubsampler", precision=p), clips=True)
        for p in ("low", "keyframe_adjusted", "exact")
    ]
    settings += [
        Setting("cut detection", mode, _args("CutDetectionSubsampler", cut_detection_mode=mode))
        for mode in ("all", "longest")
    ]
    settings += [
        Setting("ffprobe", f"keyframes {k}", _args("FFProbeSubsampler", extract_keyframes=k))
        for k in (False, True)
    ]
    flow = _args("OpticalFlowSubsampler", fps=2, downsample_size=16, dtype="fp16")
    settings.append(Setting("optical flow", "fp16 2 fps 16 px", flow))
    return settings


def make_inputs(folder: Path, count: int, seconds: float, width: int, height: int) -> list[Input]:
    """``count`` scene videos (scene order rotated per video) and their audio; existing files are kept."""
    inputs = []
    for index in range(count):
        video = folder / f"scenes_{index:04d}.mp4"
        audio = video.with_suffix(".m4a")
        if not video.exists() or not audio.exists():
            order = SCENES[index % len(SCENES) :] + SCENES[: index % len(SCENES)]
            scenes = [(scene, seconds / len(SCENES)) for scene in order]
            make_scene_video(video, scenes, width=width, height=height, fps=25)
            extract = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(video)]
            subprocess.run([*extract, "-vn", "-c:a", "copy", str(audio)], check=True, timeout=60)
        with av.open(str(video)) as container:
            frames = container.streams.video[0].frames
        step = seconds / CLIP_COUNT
        spans = [[i * step, (i + 1) * step] for i in range(CLIP_COUNT)]
        inputs.append(Input(video=video, audio=audio, frames=frames, spans=spans))
    return inputs


def job_for(setting: Setting) -> JobConfig:
    formats = {"video": "mp4", "audio": "m4a"} if setting.audio else {"video": "mp4"}
    return JobConfig(
        url_list="unused",
        encode_formats=formats,
        clip_col="clips" if setting.clips else None,
        config=Config.from_mapping({"subsampling": dict(setting.subsampling)}),
    )


def sample_for(setting: Setting, item: Input, index: int) -> Sample:
    streams = {"video": item.video, **({"audio": item.audio} if setting.audio else {})}
    extra = {"clips": item.spans} if setting.clips else {}
    return Sample(key=f"{index:05d}", url=str(item.video), extra=extra, streams=streams)


def cpu_seconds() -> float:
    """User + system CPU of this process and of every child it has waited for (ffmpeg)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_setting(setting: Setting, inputs: Sequence[Input], tmp: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds of the chain over every input, and what the first input became."""
    chain = build_subsamplers(job_for(setting))
    wall = cpu = 0.0
    check = ""
    for index, item in enumerate(inputs):
        sample, workdir = sample_for(setting, item, index), tmp / f"{index:05d}"
        workdir.mkdir()
        cpu_before, started = cpu_seconds(), time.perf_counter()
        outputs = apply_subsamplers(chain, sample, workdir)
        wall += time.perf_counter() - started
        cpu += cpu_seconds() - cpu_before
        if index == 0:
            check = describe(outputs, item)  # read while the files exist
        shutil.rmtree(workdir)
    return wall, cpu, check


def decode_baseline(inputs: Sequence[Input]) -> float:
    """Wall seconds of ffmpeg decoding every input (video and audio) to null."""
    started = time.perf_counter()
    for item in inputs:
        command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(item.video), "-f", "null", "-"]
        subprocess.run(command, check=True, timeout=120)
    return time.perf_counter() - started


def describe(samples: list[Sample], item: Input) -> str:
    """What the first input became (new files and metadata), to check the setting did what it says."""
    first = samples[0]
    parts = [f"{len(samples)} clips"] if len(samples) > 1 else []
    if first.streams.get("video", item.video) != item.video:
        with av.open(str(first.streams["video"])) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            parts.append(f"{stream.codec_context.width}x{stream.codec_context.height} {frames} fr")
    if first.streams.get("audio", item.audio) != item.audio:
        with av.open(str(first.streams["audio"])) as container:
            parts.append(f"{container.streams.audio[0].codec_context.sample_rate} Hz")
    metadata = first.metadata
    if "cuts" in metadata:
        parts.append(f"scenes: {len(metadata['cuts']['cuts_original_fps'])}")
    if "video_metadata" in metadata:
        keyframes = metadata["video_metadata"].get("keyframe_timestamps")
        parts.append(f"{len(metadata['video_metadata']['streams'])} streams")
        parts += [f"{len(keyframes)} keyframe times"] if keyframes is not None else []
    if "optical_flow" in first.streams:
        parts.append(f"flow {tuple(np.load(first.streams['optical_flow']).shape)}")
    return ", ".join(parts)


def run_grid(settings: list[Setting], inputs: list[Input], rounds: int) -> dict[str, Result]:
    """Every setting once per round, after the round's decode baseline."""
    results = {f"{s.group}: {s.name}": Result() for s in settings}
    decodes = []
    with tempfile.TemporaryDirectory(prefix="v2d-grid-", dir=os.environ.get("TMPDIR")) as name:
        for index in range(rounds):
            decode = decode_baseline(inputs)
            decodes.append(decode)
            print(f"round {index + 1}: decode baseline {decode:.2f}s (load {os.getloadavg()[0]:.2f})")
            for setting in settings:
                result = results[f"{setting.group}: {setting.name}"]
                result.loads.append(os.getloadavg()[0])
                wall, cpu, check = run_setting(setting, inputs, Path(name))
                result.walls.append(wall)
                result.cpus.append(cpu)
                result.vs_decode.append(wall / decode)
                result.check = result.check or check
    results["baseline: ffmpeg decode to null"] = Result(walls=decodes, vs_decode=[1.0] * len(decodes))
    return results


def table(settings: list[Setting], results: dict[str, Result], inputs: list[Input]) -> str:
    count, frames = len(inputs), sum(item.frames for item in inputs)
    lines = [
        "| subsampler | setting | samples/s | frames/s | cpu-s/sample | x decode | load | first output |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [("baseline", "ffmpeg decode to null")] + [(s.group, s.name) for s in settings]
    for group, name in rows:
        result = results[f"{group}: {name}"]
        wall = statistics.median(result.walls)
        cpu = f"{statistics.median(result.cpus) / count:.3f}" if result.cpus else "-"
        load = f"{statistics.median(result.loads):.1f}" if result.loads else "-"
        lines.append(
            f"| {group} | {name} | {count / wall:.2f} | {frames / wall:.0f} | {cpu} "
            f"| {statistics.median(result.vs_decode):.2f} | {load} | {result.check} |"
        )
    return "\n".join(lines)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the generated videos")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="run the settings whose 'group: name' contains this")
    parser.add_argument("--media", default="benchmark/work/grid_scenes")
    args = parser.parse_args()

    width, height = (int(n) for n in args.size.split("x"))
    folder = Path(args.media) / f"{args.size}_{args.seconds:g}s"
    inputs = make_inputs(folder, args.videos, args.seconds, width, height)
    settings = [s for s in grid() if args.only in f"{s.group}: {s.name}"]
    print(f"uptime: {uptime()}")
    print(
        f"inputs: {len(inputs)} videos, {args.size}, {args.seconds:g} s, 25 fps, H.264 + AAC 44.1 kHz, "
        f"{sum(i.frames for i in inputs)} frames in all; {len(settings)} settings x {args.rounds} rounds",
        flush=True,
    )
    started = time.perf_counter()
    results = run_grid(settings, inputs, args.rounds)
    print(f"\n{table(settings, results, inputs)}\n")
    print(f"took {time.perf_counter() - started:.0f}s; uptime: {uptime()}")


if __name__ == "__main__":
    main()
