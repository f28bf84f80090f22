"""How long the processes of a CLI run outlive its main process, killed as a scheduler would.

For each round: a run of 2 shards (2 processes x 2 threads) whose second shard's urls stall on
the test server; once the workers are fetching, the main process alone gets SIGKILL (or
SIGTERM); the figure is the time until no process of the run is left, and the requests the
server received after the kill. Prints one line per signal and the command that reproduces it::

    V2D_ALLOW_PRIVATE_NETWORKS=1 python benchmark/orphan_workers.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.crash import cli_command, group_processes, run_env, start
from v2d_core.testing.media import make_videos
from v2d_core.testing.server import MediaServer


def one_round(server: MediaServer, work: Path, signum: signal.Signals) -> tuple[float, int]:
    tag = uuid.uuid4().hex
    urls = [server.url("files", f"video_000{i}.mp4?{tag}") for i in range(2)]
    urls += [server.url("delay/600", f"video_0002.mp4?{tag}{i}") for i in range(2)]
    source = work / f"{tag}.csv"
    source.write_text("url\n" + "\n".join(urls) + "\n")
    output = work / tag
    command = cli_command(
        f"--url_list={source}", "--input_format=csv", f"--output_folder={output}",
        "--number_sample_per_shard=2", "--processes_count=2", "--thread_count=2", "--timeout=600",
        f"--tmp_dir={work / 'tmp'}",
    )  # fmt: skip
    stalled = server.started("delay")
    process = start(command, run_env(), work / f"{tag}.log")
    while server.started("delay") < stalled + 2:
        time.sleep(0.01)
    requests_before = sum(server.started(route) for route in ("files", "delay"))
    killed = time.monotonic()
    os.kill(process.pid, signum)
    process.wait()
    while group_processes(process.pid):
        time.sleep(0.005)
    gone = time.monotonic() - killed
    return gone, sum(server.started(route) for route in ("files", "delay")) - requests_before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        make_videos(work / "media", 3, seconds=1.0)
        with MediaServer(work / "media") as server:
            for signum in (signal.SIGKILL, signal.SIGTERM):
                figures = [one_round(server, work, signum) for _ in range(rounds)]
                seconds = [gone for gone, _ in figures]
                print(
                    f"{signum.name}: last process of the run gone {statistics.median(seconds):.2f} s "
                    f"after the kill (median of {rounds}; max {max(seconds):.2f} s); requests after "
                    f"the kill: {sum(late for _, late in figures)}"
                )
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"command: V2D_ALLOW_PRIVATE_NETWORKS=1 python benchmark/orphan_workers.py --rounds {rounds}")


if __name__ == "__main__":
    main()
