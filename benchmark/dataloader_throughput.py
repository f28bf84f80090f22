"""Decoded frames/s of ``get_video_dataset`` against decoding the same frames with PyAV alone.

Setup (not timed): ``--unique`` generated 10 s 640x360 25 fps H.264/AAC videos (keyframe
every second) served on 127.0.0.1 and downloaded by ``video2dataset(...)`` into webdataset
tars, ``--videos`` samples in all.

Settings: 8 and 16 frames per clip (consecutive frames, a random window per video), with
and without resizing (short side to 224, then a 224x224 center crop). For each setting the
windows are drawn once with a fixed seed (an untimed warm-up run of the loader, which also
checks that both sides return identical frames), so every round of both sides decodes the
same frames of the same tars, in the same process, with ``--threads`` decoder threads each:

- dataloader: iterate ``get_video_dataset(tars, batch_size=8, ...)`` over every sample:
  reading the tars, sampling, seeking and decoding, RGB conversion (and scaling) with
  swscale, cropping, numpy batches;
- PyAV alone: read each mp4 member from the tars with ``tarfile``, open it with PyAV, seek
  to the window's first frame, decode forward and convert the window's frames with the same
  ``to_ndarray`` call (and the same crop);
- PyAV + batch: the same, and every 8 windows copied into one new ``[8, T, H, W, 3]`` array,
  the batch the dataloader hands out (PyAV alone builds none).

Reported per setting: medians over ``--rounds`` of frames per wall second and frames per
CPU second (user + system time of this process) of each side, of the per-round ratios
dataloader / PyAV and dataloader / PyAV + batch (the order of the sides rotates between
rounds), and of the 1-minute load average.
On a shared machine the CPU figures are the steadier ones: wall time includes waiting for
a core.

    python benchmark/dataloader_throughput.py --videos 32 --rounds 5
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import resource
import statistics
import tarfile
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from v2d_core import video2dataset
from v2d_core.dataloader import get_video_dataset
from v2d_core.testing.media import make_videos
from v2d_core.testing.server import MediaServer

RESIZE = 224
SEED = 7


@dataclass(frozen=True, slots=True)
class Setting:
    n_frames: int
    resize: bool

    @property
    def label(self) -> str:
        return f"{self.n_frames} frames, " + (
            f"resize {RESIZE} + crop {RESIZE}" if self.resize else "no resize"
        )

    def options(self, threads: int) -> dict:
        geometry = {"resize_size": RESIZE, "crop_size": RESIZE} if self.resize else {}
        return {"decoder_kwargs": {"n_frames": self.n_frames, "num_threads": threads}, **geometry}


def build_dataset(folder: Path, videos: int, unique: int) -> Path:
    """v2d's own download of ``videos`` urls over ``unique`` generated files."""
    files = make_videos(folder / "media", unique, seconds=10.0, width=640, height=360)
    with MediaServer(folder / "media") as server:
        with (folder / "urls.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["url", "caption"])
            for row in range(videos):
                writer.writerow(
                    [f"{server.url('files', files[row % unique].name)}?row={row}", f"video {row}"]
                )
        video2dataset(
            url_list=str(folder / "urls.csv"),
            input_format="csv",
            caption_col="caption",
            output_folder=str(folder / "dataset"),
            output_format="webdataset",
            number_sample_per_shard=8,
            processes_count=2,
            thread_count=4,
            show_progress=False,
        )
    return folder / "dataset"


def run_loader(
    tars: Path, setting: Setting, threads: int
) -> tuple[int, dict[str, int], dict[str, np.ndarray]]:
    """Frames decoded, each key's window start, and each key's first frame (for the identity check)."""
    random.seed(SEED)
    loader = get_video_dataset(str(tars), batch_size=8, **setting.options(threads))
    frames, starts, firsts = 0, {}, {}
    for batch in loader:
        frames += batch["mp4"].shape[0] * batch["mp4"].shape[1]
        for index, key in enumerate(batch["__key__"]):
            starts[key] = int(batch["start_frame"][index])
            firsts[key] = batch["mp4"][index, 0].copy()  # not a view: batches are freed as in training
    return frames, starts, firsts


def run_pyav(
    tars: Path, setting: Setting, starts: dict[str, int], threads: int, batch_size: int | None = None
) -> tuple[int, dict[str, np.ndarray]]:
    """The same windows decoded by PyAV alone: seek to the first frame, decode forward, convert.

    With ``batch_size``, every ``batch_size`` windows are also copied into one ``[B, T, H, W, 3]``
    array, the batch a training loop needs (what the dataloader hands out).
    """
    frames, firsts, pending = 0, {}, []
    for shard in sorted(tars.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, ext = member.name.partition(".")
                if ext != "mp4":
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                window = pyav_window(data, starts[key], setting, threads)
                frames += len(window)
                firsts[key] = window[0].copy()
                if batch_size:
                    pending.append(window)
                if batch_size and len(pending) == batch_size:
                    batch_array(pending)
                    pending = []
    if pending:
        batch_array(pending)
    return frames, firsts


def batch_array(windows: list[list[np.ndarray]]) -> np.ndarray:
    """Windows as one new batch array, each frame copied once."""
    batch = np.empty((len(windows), len(windows[0]), *windows[0][0].shape), dtype=np.uint8)
    for row, window in enumerate(windows):
        for column, frame in enumerate(window):
            batch[row, column] = frame
    return batch


def pyav_window(data: bytes, start: int, setting: Setting, threads: int) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        rate, base = Fraction(stream.average_rate), stream.time_base
        height, width = stream.codec_context.height, stream.codec_context.width
        size = {}
        if setting.resize:
            factor = RESIZE / min(height, width)
            size = {"height": round(height * factor), "width": round(width * factor)}
        container.seek(int(start / rate / base), stream=stream, backward=True)
        window = []
        for frame in container.decode(stream):
            if round(frame.pts * base * rate) < start:
                continue
            pixels = frame.to_ndarray(format="rgb24", **size)
            if setting.resize:
                top, left = (pixels.shape[0] - RESIZE) // 2, (pixels.shape[1] - RESIZE) // 2
                pixels = np.ascontiguousarray(pixels[top : top + RESIZE, left : left + RESIZE])
            window.append(pixels)
            if len(window) == setting.n_frames:
                return window
    raise RuntimeError(f"the video ended before frame {start + setting.n_frames}")


def cpu_seconds() -> float:
    """User + system CPU of this process (decoder threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


SIDES = ("loader", "pyav", "pyav+batch")


def run_side(side: str, tars: Path, setting: Setting, starts: dict[str, int], threads: int) -> int:
    if side == "loader":
        frames, seen, _ = run_loader(tars, setting, threads)
        assert seen == starts, "the loader drew other windows than in the warm-up"
        return frames
    return run_pyav(tars, setting, starts, threads, batch_size=8 if side == "pyav+batch" else None)[0]


def measure(tars: Path, setting: Setting, rounds: int, threads: int) -> dict[str, float]:
    """Medians over ``rounds`` of frames per wall second and per CPU second of each side, and ratios."""
    _, starts, loader_firsts = run_loader(tars, setting, threads)
    _, pyav_firsts = run_pyav(tars, setting, starts, threads)
    assert all(np.array_equal(loader_firsts[key], pyav_firsts[key]) for key in starts), "frames differ"
    figures: dict[str, list[float]] = {}
    for round_index in range(rounds):
        shift = round_index % len(SIDES)
        for side in SIDES[shift:] + SIDES[:shift]:
            figures.setdefault("load", []).append(os.getloadavg()[0])
            cpu, started = cpu_seconds(), time.perf_counter()
            frames = run_side(side, tars, setting, starts, threads)
            figures.setdefault(f"{side} wall", []).append(frames / (time.perf_counter() - started))
            figures.setdefault(f"{side} cpu", []).append(frames / (cpu_seconds() - cpu))
        for kind in ("wall", "cpu"):
            for baseline in SIDES[1:]:
                ratio = figures[f"loader {kind}"][-1] / figures[f"{baseline} {kind}"][-1]
                figures.setdefault(f"loader/{baseline} {kind}", []).append(ratio)
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--unique", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="decoder threads, the same for both sides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="v2d-bench-loader-") as tmp:
        tars = build_dataset(Path(tmp), args.videos, args.unique)
        print(f"{args.videos} videos, {args.rounds} rounds, {args.threads} decoder threads per side")
        print(
            "| setting | frames/s: dataloader / PyAV / PyAV+batch | frames per CPU-s: dataloader / PyAV "
            "/ PyAV+batch | dataloader / PyAV (wall, CPU) | dataloader / PyAV+batch (wall, CPU) | load avg |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for setting in (Setting(8, False), Setting(16, False), Setting(8, True), Setting(16, True)):
            result = measure(tars, setting, args.rounds, args.threads)
            cells = [
                " / ".join(f"{result[f'{side} {kind}']:.0f}" for side in SIDES) for kind in ("wall", "cpu")
            ]
            for baseline in SIDES[1:]:
                cells.append(
                    ", ".join(f"{result[f'loader/{baseline} {kind}']:.2f}" for kind in ("wall", "cpu"))
                )
            print(f"| {setting.label} | {' | '.join(cells)} | {result['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
