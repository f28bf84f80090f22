"""Download-only throughput of the `video2dataset` CLI against a raw parallel HTTP fetch.

Both fetch the same N urls from one server process on 127.0.0.1, in the same run. The
raw baseline only streams each body to a file; v2d also checks media, writes tars,
parquet and stats. Peak memory is the summed RSS of the CLI's process tree.

    pip install -e ".[bench]"
    python benchmark/download_throughput.py --videos 1000 --unique 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from v2d_core.testing.media import make_videos

SERVER_CODE = (
    "import sys, time; from pathlib import Path; from v2d_core.testing.server import MediaServer\n"
    "s = MediaServer(Path(sys.argv[1])).start(); print(s.base_url, flush=True); time.sleep(10**6)"
)


def start_server(media: Path) -> tuple[subprocess.Popen[str], str]:
    """Serve ``media`` from a separate process so the server does not share the measured GIL."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE, str(media)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def raw_fetch(urls: list[str], folder: Path, threads: int) -> float:
    """Stream every url to a file with ``threads`` threads; return the wall time."""
    folder.mkdir(parents=True)
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=threads))

    def fetch(index_url: tuple[int, str]) -> None:
        index, url = index_url
        with (
            session.get(url, stream=True, timeout=60) as response,
            (folder / f"{index}.mp4").open("wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                out.write(chunk)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fetch, enumerate(urls)))
    return time.perf_counter() - started


def peak_tree_rss(process: subprocess.Popen[bytes], samples: list[int]) -> None:
    """Poll the summed RSS of ``process`` and its children until it exits."""
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            samples.append(sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)


def v2d_fetch(
    url_list: Path, output: Path, processes: int, threads: int, per_shard: int, extra: list[str]
) -> tuple[float, int]:
    """Run the CLI; return its wall time and peak summed RSS in bytes."""
    command = [
        sys.executable,
        "-m",
        "v2d_core.cli",
        f"--url_list={url_list}",
        "--input_format=txt",
        f"--output_folder={output}",
        "--output_format=webdataset",
        f"--processes_count={processes}",
        f"--thread_count={threads}",
        f"--number_sample_per_shard={per_shard}",
        "--show_progress=False",
        "--allow_private_networks=True",  # the server is on 127.0.0.1
        *extra,
    ]
    samples: list[int] = []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    watcher = threading.Thread(target=peak_tree_rss, args=(process, samples))
    watcher.start()
    process.wait()
    watcher.join()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"video2dataset failed with exit code {process.returncode}")
    return elapsed, max(samples, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--unique", type=int, default=20, help="distinct generated files behind the urls")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--per_shard", type=int, default=100)
    parser.add_argument("--media", default="benchmark/work/media_640x360_10s")
    parser.add_argument("--v2d_flag", action="append", default=[], help="extra flag for the CLI, repeatable")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw / v2d rounds; medians kept")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    media = Path(args.media)
    make_videos(media, args.unique, seconds=10.0, width=640, height=360)
    server, base_url = start_server(media)
    raw_times, v2d_times, peaks = [], [], []
    try:
        urls = [f"{base_url}/files/video_{i % args.unique:04d}.mp4?n={i}" for i in range(args.videos)]
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="v2d-bench-", dir=os.environ.get("TMPDIR")) as tmp:
                url_list = Path(tmp) / "urls.txt"
                url_list.write_text("\n".join(urls) + "\n")
                raw_times.append(raw_fetch(urls, Path(tmp) / "raw", args.processes * args.threads))
                seconds, peak = v2d_fetch(
                    url_list, Path(tmp) / "v2d", args.processes, args.threads, args.per_shard, args.v2d_flag
                )
                v2d_times.append(seconds)
                peaks.append(peak)
    finally:
        server.terminate()
        server.wait()
    size_mb = sum(p.stat().st_size for p in media.glob("*.mp4")) / args.unique / 1e6
    raw_rate = args.videos / statistics.median(raw_times)
    v2d_rate = args.videos / statistics.median(v2d_times)
    print(f"videos={args.videos} mean_size={size_mb:.2f}MB processes={args.processes} threads={args.threads}")
    print(f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"raw fetch: {raw_rate:.1f} videos/s (median; rounds {_seconds(raw_times)})")
    print(f"v2d cli:   {v2d_rate:.1f} videos/s (median; rounds {_seconds(v2d_times)})")
    print(f"v2d peak summed RSS over its processes: {max(peaks) / 2**20:.0f} MiB")
    print(f"ratio v2d/raw: {v2d_rate / raw_rate:.2f}")


def _seconds(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}s" for t in times)


if __name__ == "__main__":
    main()
