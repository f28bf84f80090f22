"""Download-only throughput of the `video2dataset` CLI against the raw fetch (the physical limit).

Both sides are commands run on the same N urls served by one server process on 127.0.0.1,
in alternating rounds of one run, with the same shape: ``--processes`` processes of
``--threads`` threads, ``--per_shard`` urls per tar shard, webdataset output.

- raw: ``benchmark/raw_fetch.py``, a minimal parallel HTTP fetch writing each body as a tar
  member with a small json member (no check, no parquet, no stats);
- v2d: the ``video2dataset`` CLI (checks every file is whole media, writes tars, parquet, stats).

Each side is timed from launch to exit (start-up included); its output is deleted and the
disk synced (and, when run as root, the page cache dropped) before the next side starts, so
neither pays for the other's writeback nor starts on a page cache the other filled. CPU is
every process of the command (this script is their subreaper, so orphans such as the
forkserver are counted); peak memory is the summed RSS of the command's processes. Prints
the ratio v2d / raw, and the last v2d round's CPU by process (the planning process, the
forkserver, its workers; polled every 50 ms, so each process's last 50 ms are missing).

    pip install -e ".[bench]"
    python benchmark/download_throughput.py --videos 200 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from v2d_core.testing.media import make_videos

HERE = Path(__file__).resolve().parent
PR_SET_CHILD_SUBREAPER = 36
SERVER_CODE = (
    "import sys, time; from pathlib import Path; from v2d_core.testing.server import MediaServer\n"
    "s = MediaServer(Path(sys.argv[1])).start(); print(s.base_url, flush=True); time.sleep(10**6)"
)


@dataclass(frozen=True, slots=True)
class Measure:
    """One command's run: wall seconds, CPU seconds of all its processes (user, system), peak summed RSS."""

    seconds: float
    user: float
    system: float
    peak_rss: int
    by_role: dict[str, tuple[float, float]]

    @property
    def cpu(self) -> float:
        return self.user + self.system


def start_server(media: Path) -> tuple[subprocess.Popen[str], str]:
    """Serve ``media`` from a separate process so the server does not share the measured GIL."""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE, str(media)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, server.stdout.readline().strip()


def become_subreaper() -> None:
    """Orphaned descendants of the measured commands become this process's children (Linux)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _watch_tree(
    root: psutil.Process, done: threading.Event, samples: list[int], cpu: dict[int, tuple[str, float, float]]
) -> None:
    """Sample the tree's summed RSS, and each process's role and CPU (user, system) as last seen."""
    while not done.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
            samples.append(sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        for process in tree:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                cpu[process.pid] = (_role(root, process), times.user, times.system)
        done.wait(0.05)


def _role(root: psutil.Process, process: psutil.Process) -> str:
    if process.pid == root.pid:
        return "planner"
    command = " ".join(process.cmdline())
    if "forkserver import main" in command:
        parent = process.parent()
        forked = parent is not None and "forkserver import main" in " ".join(parent.cmdline())
        return "worker" if forked else "forkserver"
    return "resource_tracker" if "resource_tracker" in command else "other"


def _reap_all(keep: set[int]) -> None:
    """Wait for every child but ``keep`` (the server): the command and its orphans."""
    while children := [p for p in psutil.Process().children() if p.pid not in keep]:
        for child in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)


def measure(command: list[str], keep: set[int]) -> Measure:
    """Run ``command``; its wall time, the CPU of it and all its descendants, its peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    samples: list[int] = []
    cpu: dict[int, tuple[str, float, float]] = {}
    done = threading.Event()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watcher = threading.Thread(target=_watch_tree, args=(psutil.Process(process.pid), done, samples, cpu))
    watcher.start()
    _, errors = process.communicate()
    code = process.returncode
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    _reap_all(keep)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"{command[:3]} failed with exit code {code}:\n{errors}")
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    by_role: dict[str, tuple[float, float]] = {}
    for role, role_user, role_system in cpu.values():
        so_far = by_role.get(role, (0.0, 0.0))
        by_role[role] = (so_far[0] + role_user, so_far[1] + role_system)
    return Measure(elapsed, user, system, max(samples, default=0), by_role)


def raw_command(url_list: Path, output: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        str(HERE / "raw_fetch.py"),
        str(url_list),
        str(output),
        f"--processes={args.processes}",
        f"--threads={args.threads}",
        f"--per_shard={args.per_shard}",
    ]


def v2d_command(url_list: Path, output: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "v2d_core.cli",
        f"--url_list={url_list}",
        "--input_format=txt",
        f"--output_folder={output}",
        "--output_format=webdataset",
        f"--processes_count={args.processes}",
        f"--thread_count={args.threads}",
        f"--number_sample_per_shard={args.per_shard}",
        "--show_progress=False",
        "--allow_private_networks=True",  # the server is on 127.0.0.1
        *args.v2d_flag,
    ]


def settle_page_cache() -> None:
    """Write back and, where allowed (root), drop the page cache: each side starts from the same state."""
    os.sync()
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/drop_caches").write_text("1\n")


def successes(output: Path) -> int:
    return sum(json.loads(p.read_text())["successes"] for p in output.glob("*_stats.json"))


def run_n(videos: int, base_url: str, keep: set[int], args: argparse.Namespace) -> None:
    """Alternating rounds of both sides on ``videos`` urls; print the medians and the ratio."""
    urls = [f"{base_url}/files/video_{i % args.unique:04d}.mp4?n={i}" for i in range(videos)]
    raw: list[Measure] = []
    v2d: list[Measure] = []
    load_before = os.getloadavg()[0]
    for round_index in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="v2d-bench-", dir=os.environ.get("TMPDIR")) as tmp:
            url_list = Path(tmp) / "urls.txt"
            url_list.write_text("\n".join(urls) + "\n")
            sides = [("raw", raw_command, raw), ("v2d", v2d_command, v2d)]
            for name, command, results in sides[:: 1 if round_index % 2 == 0 else -1]:
                output = Path(tmp) / name
                results.append(measure(command(url_list, output, args), keep))
                if name == "v2d" and (ok := successes(output)) != videos:
                    raise SystemExit(f"v2d fetched {ok} of {videos} videos")
                # the next side must not pay for writing this side's tars back to disk
                shutil.rmtree(output)
                settle_page_cache()
    raw_rate = videos / statistics.median(m.seconds for m in raw)
    v2d_rate = videos / statistics.median(m.seconds for m in v2d)
    print(f"N={videos}: load average before/after {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    for name, results, rate in (("raw fetch", raw, raw_rate), ("v2d cli  ", v2d, v2d_rate)):
        rounds = ", ".join(f"{m.seconds:.2f}s" for m in results)
        cpu_ms = statistics.median(m.cpu for m in results) / videos * 1000
        user_ms = statistics.median(m.user for m in results) / videos * 1000
        system_ms = statistics.median(m.system for m in results) / videos * 1000
        peak = max(m.peak_rss for m in results) / 2**20
        print(f"  {name}: {rate:6.1f} videos/s (rounds {rounds}); ", end="")
        print(f"{cpu_ms:.1f} ms CPU/video (user {user_ms:.1f}, kernel {system_ms:.1f}); ", end="")
        print(f"peak RSS {peak:.0f} MiB")
    print(f"  ratio v2d/raw: {v2d_rate / raw_rate:.2f}")
    roles = sorted(v2d[-1].by_role.items(), key=lambda item: -sum(item[1]))
    shares = ", ".join(f"{role} {u / videos * 1000:.2f} / {s / videos * 1000:.2f}" for role, (u, s) in roles)
    print(f"  v2d CPU ms per video by process, user / kernel (last round): {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--unique", type=int, default=20, help="distinct generated files behind the urls")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per_shard", type=int, default=25)
    parser.add_argument("--media", default="benchmark/work/media_640x360_10s")
    parser.add_argument("--v2d_flag", action="append", default=[], help="extra flag for the CLI, repeatable")
    parser.add_argument("--rounds", type=int, default=3, help="alternating raw / v2d rounds; medians kept")
    args = parser.parse_args()

    become_subreaper()
    media = Path(args.media)
    make_videos(media, args.unique, seconds=10.0, width=640, height=360)
    size_mb = sum(p.stat().st_size for p in media.glob("*.mp4")) / args.unique / 1e6
    print(f"command: {' '.join(sys.argv)}")
    print(f"mean_size={size_mb:.2f}MB processes={args.processes} threads={args.threads}", end=" ")
    print(f"per_shard={args.per_shard} page_cache_dropped={os.access('/proc/sys/vm/drop_caches', os.W_OK)}")
    server, base_url = start_server(media)
    try:
        for videos in args.videos:
            run_n(videos, base_url, {server.pid}, args)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
