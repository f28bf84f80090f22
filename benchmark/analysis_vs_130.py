"""Cut detection and optical flow: v2d against video2dataset 1.3.0's per-frame method.

Baseline: 1.3.0's method re-implemented minimally here (not 1.3.0 itself), as its
subsamplers run it:

- cuts: PySceneDetect's ``open_video`` (OpenCV backend, every frame decoded at full size
  to BGR), a ``SceneManager`` with one ``ContentDetector`` (threshold 27, min_scene_len 15),
  ``downscale = width // 64``, ``get_scene_list(start_in_scene=True)``.
- flow: every frame decoded at full size (OpenCV; 1.3.0 used decord), the frames at
  ``--flow-fps`` kept, resized with ``INTER_AREA`` so the short side is 16, as float32,
  grayscale, Farneback with OpenCV's usual values, flow scaled back to source pixels.

v2d: ``detect_cuts`` and ``OpticalFlowSubsampler`` (one ffmpeg decode at analysis size).

Inputs: ``--videos`` generated 10 s 640x360 30 fps H.264 videos of four scenes (cuts at
frames 75, 150 and 225, known), with moving sources so that flow is not zero. Rounds
alternate the order of the methods; every figure is CPU seconds (this process and its
children) per video, the median over rounds. Accuracy: the cut frames each method finds
against the true ones, and the relative difference of the mean flow magnitude per video.

    pip install -e ".[bench]"
    python benchmark/analysis_vs_130.py --videos 6 --rounds 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scenedetect import ContentDetector, SceneManager, open_video

from v2d_core.sample import Sample
from v2d_core.subsamplers.cut_detection import detect_cuts
from v2d_core.subsamplers.optical_flow import FARNEBACK_DEFAULTS, OpticalFlowSubsampler
from v2d_core.subsamplers.settings import CutDetectionArgs, OpticalFlowArgs
from v2d_core.testing.scenes import make_scene_video

FPS = 30
SCENE_SECONDS = 2.5
TRUE_CUTS = [75, 150, 225]
SOURCES = ["testsrc2", "testsrc,scroll=horizontal=0.01", "smptehdbars,scroll=vertical=0.02", "rgbtestsrc"]
FLOW_SHORT_SIDE = 16


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_inputs(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        order = SOURCES[index % len(SOURCES) :] + SOURCES[: index % len(SOURCES)]
        path = folder / f"scenes_{index}.mp4"
        if not path.exists():
            make_scene_video(
                path, [(s, SCENE_SECONDS) for s in order], width=640, height=360, fps=FPS, gop=2 * FPS
            )
        paths.append(path)
    return paths


def cuts_130(path: Path) -> list[int]:
    video = open_video(str(path))
    manager = SceneManager()
    manager.add_detector(ContentDetector(threshold=27, min_scene_len=15))
    manager.auto_downscale = False
    manager.downscale = video.frame_size[0] // 64
    manager.detect_scenes(video=video)
    return [start.frame_num for start, _ in manager.get_scene_list(start_in_scene=True)][1:]


def cuts_v2d(path: Path) -> list[int]:
    scenes = detect_cuts(path, CutDetectionArgs())["cuts_original_fps"]
    return [start for start, _ in scenes][1:]


def flow_130(path: Path, fps: float) -> float:
    capture = cv2.VideoCapture(str(path))
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    step = max(1, round(source_fps / fps))
    frames, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            height, width = frame.shape[:2]
            scale = FLOW_SHORT_SIDE / min(height, width)
            small = cv2.resize(
                frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
            )
            frames.append((small.astype(np.float32), min(height, width) / FLOW_SHORT_SIDE))
        index += 1
    capture.release()
    magnitudes = []
    for (previous, factor), (frame, _) in itertools.pairwise(frames):
        flow = cv2.calcOpticalFlowFarneback(
            cv2.cvtColor(previous, cv2.COLOR_BGR2GRAY),
            cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY),
            None,  # type: ignore[arg-type]
            *FARNEBACK_DEFAULTS,
        )
        magnitudes.append(float(np.linalg.norm(flow * factor, axis=-1).mean()))
    return float(np.mean(magnitudes))


def flow_v2d(path: Path, fps: float, workdir: Path) -> float:
    subsampler = OpticalFlowSubsampler(OpticalFlowArgs(fps=fps, downsample_size=FLOW_SHORT_SIDE))
    sample = Sample(key=path.stem, url=str(path), streams={"video": path})
    (out,) = subsampler(sample, workdir)
    return float(out.metadata["mean_optical_flow_magnitude"])


def timed(work: Callable[[Path], object], inputs: list[Path]) -> tuple[float, list[object]]:
    """CPU seconds per video, and each video's answer."""
    started = cpu_seconds()
    answers = [work(path) for path in inputs]
    return (cpu_seconds() - started) / len(inputs), answers


def cut_score(found: list[list[int]]) -> str:
    exact = sum(len(set(cuts) & set(TRUE_CUTS)) for cuts in found)
    extra = sum(len(set(cuts) - set(TRUE_CUTS)) for cuts in found)
    return f"{exact}/{len(TRUE_CUTS) * len(found)} true cuts found at their exact frame, {extra} false"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flow-fps", type=float, default=2.0)
    parser.add_argument("--media", default="benchmark/work/scenes_640x360_10s_30fps")
    args = parser.parse_args()
    inputs = make_inputs(Path(args.media), args.videos)
    print(f"$ python benchmark/analysis_vs_130.py --videos {args.videos} --rounds {args.rounds}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="v2d-analysis-") as tmp:
        sides: dict[str, Callable[[Path], object]] = {
            "cuts 1.3.0": cuts_130,
            "cuts v2d": cuts_v2d,
            "flow 1.3.0": lambda path: flow_130(path, args.flow_fps),
            "flow v2d": lambda path: flow_v2d(path, args.flow_fps, Path(tmp)),
        }
        for work in sides.values():  # imports and caches warm, not timed
            work(inputs[0])
        cpu: dict[str, list[float]] = {side: [] for side in sides}
        answers: dict[str, list[object]] = {}
        for index in range(args.rounds):
            order = list(sides) if index % 2 == 0 else list(reversed(sides))
            for side in order:
                seconds, answers[side] = timed(sides[side], inputs)
                cpu[side].append(seconds)
            figures = "  ".join(f"{side} {cpu[side][-1]:.3f}" for side in sides)
            print(f"round {index + 1} cpu-s/video: {figures}  (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    median = {side: statistics.median(values) for side, values in cpu.items()}
    for kind in ("cuts", "flow"):
        ratio = median[f"{kind} 1.3.0"] / median[f"{kind} v2d"]
        print(
            f"{kind}: 1.3.0 method {median[f'{kind} 1.3.0']:.3f} cpu-s/video, v2d "
            f"{median[f'{kind} v2d']:.3f}: v2d is {ratio:.2f}x faster"
        )
    print(f"cut accuracy, 1.3.0 method: {cut_score(answers['cuts 1.3.0'])}")  # type: ignore[arg-type]
    print(f"cut accuracy, v2d: {cut_score(answers['cuts v2d'])}")  # type: ignore[arg-type]
    flows = zip(answers["flow 1.3.0"], answers["flow v2d"], strict=True)
    differences = [abs(ours - theirs) / theirs for theirs, ours in flows]  # type: ignore[operator]
    print(f"mean flow magnitude, v2d against the 1.3.0 method: at most {max(differences):.1%} apart")


if __name__ == "__main__":
    main()
