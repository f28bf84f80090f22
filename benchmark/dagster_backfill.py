"""A Dagster backfill through the daemon against the `video2dataset` CLI, same shards, same machine.

Both download the same N urls (from one server process on 127.0.0.1) into webdataset shards.
The CLI runs every shard on one local process pool. Dagster runs ``dagster dev`` (webserver
plus daemon, deploy/dagster.yaml: a run queue of at most 2 runs), the dataset's
shard_plan is materialized, then a backfill of every shard is launched through GraphQL; the
backfill policy batches ``--shards-per-run`` shards per run and each run processes them on
its own pool of ``--processes`` // 2 processes, so both sides run ``--processes`` shards at once.

Reported: CLI wall time; backfill time from launch until every partition is materialized
and until the daemon marks the backfill complete; their ratios; the runs and their overhead.
With ``--backfill single_run`` the stage's BackfillPolicy is single_run (the whole range in one
run, on that run's pool of ``--processes`` processes); ``--range-run`` also times one run of the
stage's job over the whole range launched through GraphQL (the run queue, no backfill daemon).

    python benchmark/dagster_backfill.py --videos 400 --unique 20 --per-shard 20
    python benchmark/dagster_backfill.py --videos 9 --unique 3 --per-shard 3 --seconds 2 \
        --backfill single_run --range-run
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from download_throughput import start_server  # benchmark/ is on sys.path when run as a script

from v2d_core.testing.media import make_videos
from v2d_dagster.testing import REPO, LocalDagster, plan_dataset

NAME = "bench"
DOWNLOAD = [NAME, "download"]


def write_url_list(path: Path, base_url: str, videos: list[Path], count: int) -> Path:
    """``count`` distinct urls over the served videos (a query string makes each unique)."""
    lines = [f"{base_url}/files/{videos[i % len(videos)].name}?row={i}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(url_list: Path, output: Path, args: argparse.Namespace) -> float:
    """The CLI over every shard; its wall time."""
    command = [
        sys.executable, "-m", "v2d_core.cli", f"--url_list={url_list}", "--input_format=txt",
        f"--output_folder={output}", "--output_format=webdataset",
        f"--number_sample_per_shard={args.per_shard}",
        f"--processes_count={args.processes}", f"--thread_count={args.threads}", f"--config={args.config}",
        "--allow_private_networks=True",  # the server is on 127.0.0.1
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - started


def write_dataset(folder: Path, url_list: Path, output_root: Path, args: argparse.Namespace) -> Path:
    download = {
        "output_format": "webdataset",
        "number_sample_per_shard": args.per_shard,
        # two runs at once (dagster.yaml), or one run over the whole range
        "processes_count": args.processes if args.backfill == "single_run" else max(1, args.processes // 2),
        "thread_count": args.threads,
        "shards_per_run": args.shards_per_run,
        "backfill": args.backfill,
        "max_retries": 0,
        "allow_private_networks": True,  # the server is on 127.0.0.1
        "config": args.config,
    }
    spec = {
        "name": NAME,
        "url_list": str(url_list),
        "output_root": str(output_root),
        "stages": {"download": download},
    }
    folder.mkdir(parents=True)
    (folder / f"{NAME}.yaml").write_text(yaml.safe_dump(spec))
    return folder


def run_backfill(datasets: Path, home: Path, timeout: float, range_run: bool) -> dict[str, float]:
    """Plan the shards, launch a backfill of all of them through GraphQL; time it (and a ranged run)."""
    home.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    partitions = plan_dataset(home, datasets, NAME)
    with LocalDagster(home, datasets) as dagster:
        ranged = time_range_run(dagster, partitions, timeout) if range_run else float("nan")
        started, launched_at = time.perf_counter(), time.time()
        backfill = dagster.launch_backfill(DOWNLOAD, partitions)
        materialized = None
        while (status := dagster.backfill_status(backfill)) not in {"COMPLETED", "COMPLETED_SUCCESS"}:
            if (
                status in {"FAILED", "COMPLETED_FAILED", "CANCELED"}
                or time.perf_counter() - started > timeout
            ):
                raise RuntimeError(f"backfill {backfill} is {status}; see {dagster.log_path}")
            if materialized is None and dagster.materialized_since(DOWNLOAD, partitions, launched_at):
                materialized = time.perf_counter() - started
            time.sleep(0.5)
        completed = time.perf_counter() - started
        runs = dagster.backfill_runs(backfill)
    created, started_at, ended = zip(*runs, strict=True)
    return {
        "partitions": len(partitions),
        "runs": len(runs),
        "first_run_created_after": min(created) - launched_at,
        "first_run_started_after": min(started_at) - launched_at,
        "mean_start_latency": sum(s - c for c, s in zip(created, started_at, strict=True)) / len(runs),
        "mean_run_seconds": sum(e - s for s, e in zip(started_at, ended, strict=True)) / len(runs),
        "all_materialized": materialized if materialized is not None else completed,
        "backfill_completed": completed,
        "range_run": ranged,
    }


def time_range_run(dagster: LocalDagster, partitions: list[str], timeout: float) -> float:
    """One run of the stage's job over every partition, launch -> success, through the run queue."""
    started = time.perf_counter()
    run_id = dagster.launch_range_run(f"{NAME}_download", partitions[0], partitions[-1])
    while (status := dagster.run_status(run_id)) != "SUCCESS":
        if status in {"FAILURE", "CANCELED"} or time.perf_counter() - started > timeout:
            raise RuntimeError(f"run {run_id} is {status}; see {dagster.log_path}")
        time.sleep(0.2)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--unique", type=int, default=20, help="distinct media files behind the urls")
    parser.add_argument("--per-shard", type=int, default=20)
    parser.add_argument("--processes", type=int, default=4, help="shards at once, on either side")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--shards-per-run", type=int, default=5)
    parser.add_argument("--backfill", choices=("multi_run", "single_run"), default="multi_run")
    parser.add_argument("--range-run", action="store_true", help="also time one ranged run, no daemon")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each generated video")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--config", default="default", help="preset or YAML for both sides, e.g. one with a resize"
    )
    args = parser.parse_args()

    work = REPO / "benchmark" / "work"
    media = work / f"media_640x360_{args.seconds:g}s"
    videos = make_videos(media, args.unique, seconds=args.seconds, width=640, height=360)
    server, base_url = start_server(media)
    try:
        with tempfile.TemporaryDirectory(dir=work, prefix="dagster-backfill-") as tmp:
            root = Path(tmp)
            url_list = write_url_list(root / "urls.txt", base_url, videos, args.videos)
            cli = run_cli(url_list, root / "cli", args)
            datasets = write_dataset(root / "datasets", url_list, root / "dagster", args)
            dagster = run_backfill(datasets, root / "home", args.timeout, args.range_run)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(
        f"videos {args.videos}, {dagster['partitions']} shards of {args.per_shard}, {args.processes} at once,"
        f" backfill {args.backfill}"
    )
    if args.range_run:
        print(f"one ranged run, launch -> success:     {dagster['range_run']:7.1f} s"
              f"  ({dagster['range_run'] / cli:.2f}x CLI)")  # fmt: skip
    print(f"CLI wall time:                         {cli:7.1f} s")
    print(f"backfill, launch -> all materialized:  {dagster['all_materialized']:7.1f} s"
          f"  ({dagster['all_materialized'] / cli:.2f}x CLI)")  # fmt: skip
    print(f"backfill, launch -> daemon completed:  {dagster['backfill_completed']:7.1f} s"
          f"  ({dagster['backfill_completed'] / cli:.2f}x CLI)")  # fmt: skip
    print(f"first run created / started after launch: {dagster['first_run_created_after']:.1f} s"
          f" / {dagster['first_run_started_after']:.1f} s")  # fmt: skip
    print(f"runs: {dagster['runs']}; mean created -> started {dagster['mean_start_latency']:.1f} s,"
          f" started -> ended {dagster['mean_run_seconds']:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
