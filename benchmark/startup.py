"""Start-up of the `video2dataset` CLI: ``--help``, and launch to first shard, against a baseline.

Both sides run the same commands in fresh interpreters, in alternating rounds (the order
rotates): this checkout's ``v2d_core``, and the baseline's (``git archive`` of
``--baseline-rev``, put first on ``PYTHONPATH``).

- ``--help``: wall time of ``video2dataset --help``.
- launch to first shard: a download of ``--videos`` small mp4s served from a separate
  process on 127.0.0.1 (2 processes, one shard per process); the time from just before
  the command starts to the earliest shard's ``start_time`` in its ``_stats.json``.
  ``run`` is the whole command's wall time.

    pip install -e ".[bench]"
    python benchmark/startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from download_throughput import start_server  # benchmark/ is on sys.path when run as a script

from v2d_core.testing.media import make_videos

HERE = Path(__file__).resolve().parent.parent


def baseline_tree(rev: str, folder: Path) -> Path:
    """``v2d_core`` as of ``rev``, extracted under ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(HERE), "archive", rev, "v2d_core"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def env_for(pythonpath: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(pythonpath)}


def cli() -> list[str]:
    return [sys.executable, "-c", "from v2d_core.cli import main; main()"]


def help_seconds(pythonpath: Path, cwd: Path) -> float:
    """Wall seconds of ``video2dataset --help`` (python-fire exits 2 after showing it, as 1.3.0's)."""
    started = time.perf_counter()
    done = subprocess.run(
        [*cli(), "--help"], env=env_for(pythonpath), cwd=cwd, capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - started
    if "--output_folder" not in done.stdout + done.stderr:
        raise SystemExit(f"--help printed no help: {done.stdout}{done.stderr}")
    return seconds


def first_shard(pythonpath: Path, urls: Path, output: Path, per_shard: int) -> tuple[float, float]:
    """Seconds from launch to the first shard's start, and the whole command's seconds."""
    command = [
        *cli(),
        f"--url_list={urls}",
        "--input_format=txt",
        f"--output_folder={output}",
        "--output_format=webdataset",
        "--processes_count=2",
        "--thread_count=4",
        "--allow_private_networks=True",
        f"--number_sample_per_shard={per_shard}",
        "--incremental_mode=overwrite",
        f"--tmp_dir={output.parent}",
    ]
    launched = time.time()
    subprocess.run(
        command, env=env_for(pythonpath), cwd=output.parent, check=True, capture_output=True, timeout=300
    )
    finished = time.time()
    stats = [json.loads(path.read_text()) for path in output.glob("*_stats.json")]
    if sum(s["successes"] for s in stats) != 2 * per_shard:
        raise SystemExit(f"the download did not succeed: {stats}")
    return min(s["start_time"] for s in stats) - launched, finished - launched


def loadavg() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-rev", default="main")
    parser.add_argument("--videos", type=int, default=4, help="two shards of videos/2")
    parser.add_argument("--media", default="benchmark/work/media_160x120_2s")
    args = parser.parse_args()
    media = Path(args.media).resolve()
    make_videos(media, args.videos)
    server, base_url = start_server(media)
    print(f"$ python benchmark/startup.py --rounds {args.rounds} --baseline-rev {args.baseline_rev}")
    print(f"load average at start: {loadavg():.2f}")
    try:
        with tempfile.TemporaryDirectory(prefix="v2d-startup-") as tmp_name:
            tmp = Path(tmp_name)
            sides = {"baseline": baseline_tree(args.baseline_rev, tmp / "baseline"), "this": HERE}
            urls = tmp / "urls.txt"
            urls.write_text("".join(f"{base_url}/files/video_{i:04d}.mp4\n" for i in range(args.videos)))
            results: dict[str, dict[str, list[float]]] = {
                s: {"help": [], "first": [], "run": []} for s in sides
            }
            for index in range(args.rounds):
                order = list(sides) if index % 2 == 0 else list(reversed(sides))
                for side in order:
                    output = tmp / f"{side}_{index}" / "out"
                    output.parent.mkdir(parents=True)
                    results[side]["help"].append(help_seconds(sides[side], tmp))
                    first, run = first_shard(sides[side], urls, output, args.videos // 2)
                    results[side]["first"].append(first)
                    results[side]["run"].append(run)
                    shutil.rmtree(output.parent)
                    figures = {k: v[-1] for k, v in results[side].items()}
                    print(
                        f"round {index + 1} {side:8s} help {figures['help']:.3f}s  first shard "
                        f"{figures['first']:.3f}s  run {figures['run']:.3f}s  (load {loadavg():.2f})",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait()
    print(f"load average at end: {loadavg():.2f}")
    for side, figures in results.items():
        medians = {name: statistics.median(values) for name, values in figures.items()}
        print(
            f"median {side:8s} help {medians['help']:.3f}s  launch to first shard {medians['first']:.3f}s  "
            f"run {medians['run']:.3f}s"
        )
    for name in ("help", "first", "run"):
        ratio = statistics.median(results["this"][name]) / statistics.median(results["baseline"][name])
        print(f"this / baseline, {name}: {ratio:.2f}")


if __name__ == "__main__":
    main()
