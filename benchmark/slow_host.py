"""A url list of ten fast hosts and one slow host: do the slow host's rows stall the others?

Ten hosts are five server ports on 127.0.0.1, each also reached as ``localhost`` (the host key
is name and port); the slow host answers each request after ``--delay`` seconds. The limit is
the fast rows fetched alone; the figure is the time until the last fast row is done in the
mixed list, against that limit (target: at most 1.5x). For contrast the mixed list is also run
with ``per_host_connections`` as large as the thread pool, which lets slow rows take every
thread. Servers run in a separate process; fetches go through v2d's shard fetch stage
(``fetch_samples``: the per-host row queue, the politeness gate, the HTTP fetcher, the media check).

    python benchmark/slow_host.py --fast 200 --slow 40 --delay 5
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from v2d_core.config import Config
from v2d_core.job import JobConfig
from v2d_core.sample import Sample
from v2d_core.shards.process import fetch_samples
from v2d_core.testing.media import make_videos

SERVER_CODE = (
    "import sys, time; from pathlib import Path; from v2d_core.testing.server import MediaServer\n"
    "servers = [MediaServer(Path(sys.argv[1])).start() for _ in range(6)]\n"
    "print(' '.join(s.base_url for s in servers), flush=True); time.sleep(10**6)"
)


def start_servers(media: Path) -> tuple[subprocess.Popen[str], list[str]]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_CODE, str(media)], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    return server, server.stdout.readline().split()


def url_lists(bases: list[str], fast: int, slow: int, delay: float) -> tuple[list[str], list[str]]:
    """(fast rows alone, fast rows with the slow host's rows spread among them)."""
    hosts = [name for base in bases[:5] for name in (base, base.replace("127.0.0.1", "localhost"))]
    fast_urls = [f"{hosts[i % 10]}/files/video_{i % 4:04d}.mp4?{i}" for i in range(fast)]
    slow_urls = [f"{bases[5]}/delay/{delay:g}/video_0000.mp4?{i}" for i in range(slow)]
    step = max(1, fast // max(1, slow))
    waiting = iter(slow_urls)
    mixed: list[str] = []
    for index, url in enumerate(fast_urls):  # a slow row every ``step`` fast rows, the rest at the end
        mixed += [*itertools.islice(waiting, int(index % step == 0)), url]
    mixed += list(waiting)
    return fast_urls, mixed


def fast_rows_seconds(urls: list[str], threads: int, per_host: int, tmp: Path) -> float:
    """Seconds until every fast row (not ``/delay/``) of ``urls`` is fetched; every row must succeed."""
    config = Config.from_mapping(
        {
            "reading": {"per_host_connections": per_host, "allow_private_networks": True},
            "distribution": {"thread_count": threads},
        }
    )
    job = JobConfig(url_list="unused", config=config)
    samples = [Sample(key=str(i), url=url) for i, url in enumerate(urls)]
    remaining = sum("/delay/" not in url for url in urls)
    started = time.perf_counter()
    finished = 0.0
    with tempfile.TemporaryDirectory(dir=tmp) as work:
        for sample, fetched, _ in fetch_samples(samples, job, work, shard_id=0):
            if isinstance(fetched, BaseException):
                raise RuntimeError(f"{sample.url}: {fetched}")
            if "/delay/" not in (sample.url or ""):
                remaining -= 1
                if remaining == 0:
                    finished = time.perf_counter() - started
    return finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", type=int, default=200, help="rows of the ten fast hosts")
    parser.add_argument("--slow", type=int, default=40, help="rows of the slow host")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds the slow host takes per request")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--per-host", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        make_videos(tmp / "media", 4, seconds=2.0)
        server, bases = start_servers(tmp / "media")
        try:
            alone_urls, mixed_urls = url_lists(bases, args.fast, args.slow, args.delay)
            load_before = os.getloadavg()[0]
            alone, mixed = [], []
            for _ in range(args.rounds):
                alone.append(fast_rows_seconds(alone_urls, args.threads, args.per_host, tmp))
                mixed.append(fast_rows_seconds(mixed_urls, args.threads, args.per_host, tmp))
            unscheduled = fast_rows_seconds(mixed_urls, args.threads, 2 * args.threads, tmp)
            load_after = os.getloadavg()[0]
        finally:
            server.kill()
            server.wait()
    median_alone, median_mixed = statistics.median(alone), statistics.median(mixed)
    print(f"fast rows alone:                 {median_alone:.2f}s (median of {args.rounds})")
    print(f"fast rows among slow-host rows:  {median_mixed:.2f}s  ratio {median_mixed / median_alone:.2f}x")
    print(
        f"same, per_host_connections={2 * args.threads} (slow rows may take every thread): "
        f"{unscheduled:.2f}s  ratio {unscheduled / median_alone:.2f}x"
    )
    print(f"load average {load_before:.1f} -> {load_after:.1f}")


if __name__ == "__main__":
    main()
