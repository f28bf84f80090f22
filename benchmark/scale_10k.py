"""10,000 shards in Dagster: plan + register, load, the Partitions page, a backfill of 10,000 partitions.

Two datasets, so the run part stays small:

- ``scale``: a 10M-row url list (parquet) in 1,000-row shards = 10,000 shards. Measured, each
  in its own process with its peak memory (VmHWM): the ``shard_plan`` asset as a user
  materializes it (cut the list into 10,000 shard files and the manifest, register the 10,000
  dynamic partitions, report changed shards), loading the definitions; then ``dagster dev``
  and the asset's Partitions page in headless chromium (Playwright): seconds from navigation
  until the page counts the 10,000 partitions, and until a name filter shows the last one.
- ``tiny``: 10,000 one-row shards of a dummy workload (each url is refused at once by
  127.0.0.1:9, output format ``dummy``), planned by the same asset. A backfill of all 10,000
  partitions is launched through GraphQL and watched until every partition is materialized (or
  ``--window`` seconds): the runs the daemon creates (expected ceil(10,000 / shards_per_run)),
  the seconds until all are created, the partitions materialized, and the daemon's memory
  (RSS) sampled every 2 s and printed once a minute. Then what the relaunch sensors read at
  that size: the stale and the failed partitions of ``tiny/download``. Each figure is printed
  as soon as it is measured.

    python benchmark/scale_10k.py                       # all of it
    python benchmark/scale_10k.py --skip-backfill       # plan, load, page only
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from v2d_dagster.testing import REPO, LocalDagster

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PHASE = r"""
import json, sys, time
started = time.perf_counter()
from pathlib import Path
import dagster as dg
from v2d_dagster.factory import build_definitions
from v2d_dagster.testing import plan_dataset
phase, home, datasets, name = sys.argv[1:5]
if phase == "asset":  # the shard_plan asset: cut, manifest, register the partitions
    result = {"partitions": len(plan_dataset(Path(home), Path(datasets), name))}
elif phase == "relaunch":  # what the relaunch sensors read: every partition's stale / failed state
    from v2d_dagster.relaunch import failed_partitions
    from v2d_dagster.staleness import stale_partitions
    defs = build_definitions(datasets)
    key = dg.AssetKey([name, "download"])
    with dg.DagsterInstance.from_config(home) as instance:
        materialized = len(instance.get_materialized_partitions(key))
        stale = stale_partitions(instance, defs.resolve_asset_graph(), key)
        stale_s = time.perf_counter() - started
        failed = failed_partitions(instance, key, dg.DynamicPartitionsDefinition(name=f"{name}_shards"))
    result = {"materialized": materialized, "stale": len(stale), "failed": len(failed), "stale_s": stale_s}
else:
    defs = build_definitions(datasets)
    result = {"assets": len(defs.resolve_asset_graph().get_all_asset_keys())}
result["seconds"] = time.perf_counter() - started
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
result["peak_rss_mib"] = int(peak.split()[1]) / 1024
print(json.dumps(result))
"""


def write_url_list(path: Path, rows: int) -> Path:
    """``rows`` urls as a one-column parquet file (built in Arrow, no Python strings per row)."""
    numbers = pc.cast(pa.array(range(rows), pa.int64()), pa.string())
    urls = pc.binary_join_element_wise("http://127.0.0.1:9/v/", numbers, ".mp4", "")
    pq.write_table(pa.table({"url": urls}), path, row_group_size=1_000_000)
    return path


def write_dataset(folder: Path, name: str, url_list: Path, download: dict[str, Any]) -> None:
    spec = {
        "name": name,
        "url_list": str(url_list),
        "input_format": "parquet",
        "output_root": str(folder.parent / "out" / name),
        "stages": {"download": {"max_retries": 0, "allow_private_networks": True, **download}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))


def phase(name: str, home: Path, datasets: Path, dataset: str) -> dict[str, float]:
    """One measured phase in its own process: its seconds and peak memory."""
    done = subprocess.run(
        [sys.executable, "-c", PHASE, name, str(home), str(datasets), dataset],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def partitions_page(
    dagster: LocalDagster, profile: Path, dataset: str, shards: int, timeout: float
) -> dict[str, Any]:
    """Seconds from navigation to the Partitions page listing every partition, then to a filtered list."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        context.set_default_timeout(timeout * 1000)
        page = context.new_page()
        dagster.graphql("mutation { setNuxSeen }")
        started = time.perf_counter()
        page.goto(f"{dagster.url}/assets/{dataset}/download?view=partitions")
        count = re.compile(rf"Missing \(({shards}|{shards:,})\)")
        try:
            expect(page.get_by_text(count).first).to_be_visible()
        except AssertionError:
            page.screenshot(path=str(profile.parent / "partitions_timeout.png"))
            context.close()
            return {"page_lists_all_s": None, "not_usable_after_s": time.perf_counter() - started}
        listed = time.perf_counter() - started
        last = f"{shards - 1:05d}"
        page.get_by_placeholder(re.compile("Filter", re.IGNORECASE)).first.fill(last)
        expect(page.get_by_text(last, exact=True).first).to_be_visible()
        filtered = time.perf_counter() - started
        page.screenshot(path=str(profile.parent / "partitions_10k.png"))
        context.close()
    return {"page_lists_all_s": listed, "page_filters_s": filtered}


def daemon_process(dagster: LocalDagster) -> psutil.Process:
    parent = psutil.Process(dagster._process.pid)  # type: ignore[union-attr]
    for child in parent.children(recursive=True):
        if any("daemon" in part for part in child.cmdline()):
            return child
    raise RuntimeError("no dagster-daemon process under dagster dev")


def backfill(
    dagster: LocalDagster, dataset: str, partitions: list[str], shards_per_run: int, timeout: float
) -> dict[str, Any]:
    """Launch a backfill of every partition; runs created, seconds, the daemon's memory over time."""
    daemon = daemon_process(dagster)
    expected_runs = math.ceil(len(partitions) / shards_per_run)
    started = time.perf_counter()
    backfill_id = dagster.launch_backfill([dataset, "download"], partitions)
    launched = time.perf_counter() - started
    samples: list[tuple[float, float]] = []
    all_created: float | None = None
    runs: list[tuple[float, float, float]] = []
    records: list[Any] = []
    materialized = 0
    while time.perf_counter() - started < timeout:
        samples.append((time.perf_counter() - started, daemon.memory_info().rss / 2**20))
        if len(samples) % 30 == 1:  # about once a minute
            print(
                json.dumps(
                    {
                        "t_s": round(samples[-1][0]),
                        "daemon_rss_mib": round(samples[-1][1], 1),
                        "runs_created": len(records),
                        "materialized": materialized,
                    }
                ),
                flush=True,
            )
        runs = dagster.backfill_runs(backfill_id)
        with dg.DagsterInstance.from_config(str(dagster.home)) as instance:
            records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        if all_created is None and len(records) >= expected_runs:
            all_created = time.perf_counter() - started
        materialized = len(dagster.materialized_partitions([dataset, "download"]))
        if materialized == len(partitions):
            break
        time.sleep(2)
    elapsed = time.perf_counter() - started
    rss = [value for _, value in samples]
    third = max(1, len(rss) // 3)
    return {
        "backfill_launch_s": launched,
        "runs_expected": expected_runs,
        "runs_created": len(records),
        "runs_finished": len(runs),
        "all_runs_created_s": all_created,
        "partitions_materialized": materialized,
        "elapsed_s": elapsed,
        "daemon_rss_first_third_mib": max(rss[:third]),
        "daemon_rss_last_third_mib": max(rss[-third:]),
        "daemon_rss_peak_mib": max(rss),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--tiny-shards", type=int, default=10_000)
    parser.add_argument("--shards-per-run", type=int, default=500)
    parser.add_argument("--window", type=float, default=3600, help="seconds to watch the backfill at most")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--page-timeout", type=float, default=300)
    args = parser.parse_args()

    work = REPO / "benchmark" / "work"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="scale-") as tmp:
        root = Path(tmp)
        home, datasets = root / "home", root / "datasets"
        home.mkdir()
        shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
        started = time.perf_counter()
        big = write_url_list(root / "urls_10m.parquet", args.rows)
        results: dict[str, Any] = {"rows": args.rows, "url_list_write_s": time.perf_counter() - started}
        big_download = {"output_format": "webdataset", "number_sample_per_shard": args.per_shard}
        write_dataset(datasets, "scale", big, big_download)
        tiny = write_url_list(root / "urls_tiny.parquet", args.tiny_shards)
        write_dataset(
            datasets,
            "tiny",
            tiny,
            {
                "output_format": "dummy",
                "number_sample_per_shard": 1,
                "processes_count": 1,
                "thread_count": 1,
                "shards_per_run": args.shards_per_run,
                "timeout": 1,
                "retries": 0,  # a refused url fails at once, no backoff
            },
        )

        def record(key: str, value: Any) -> None:
            if isinstance(value, dict):
                value = {**value, "load_average_1min": round(psutil.getloadavg()[0], 1)}
            results[key] = value
            print(json.dumps({key: value}), flush=True)

        shards = math.ceil(args.rows / args.per_shard)
        record("shard_plan_asset", phase("asset", home, datasets, "scale"))
        record("load_definitions", phase("load", home, datasets, "scale"))
        record("tiny_shard_plan_asset", phase("asset", home, datasets, "tiny"))
        with LocalDagster(home, datasets) as dagster:
            if CHROMIUM:
                page = partitions_page(dagster, root / "chromium", "scale", shards, args.page_timeout)
                record("partitions_page", page)
            if not args.skip_backfill:
                partitions = [f"{i:05d}" for i in range(args.tiny_shards)]
                record("backfill", backfill(dagster, "tiny", partitions, args.shards_per_run, args.window))
                record("relaunch_sensors_read", phase("relaunch", home, datasets, "tiny"))
        record("load_average", list(psutil.getloadavg()))


if __name__ == "__main__":
    main()
