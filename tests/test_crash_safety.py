"""Crash safety: runs SIGKILLed at random real points, then resumed, lose and duplicate nothing.

Each seed starts a fresh dataset (12 rows, shards of 3, an ffmpeg resize per video) and
kills the run's whole process group ``KILLS_PER_SEED`` times, resuming after each kill:

- ``fetch``: while the MediaServer is answering the k-th (delayed) request of the run;
- ``ffmpeg``: while the k-th ffmpeg process of the run is running;
- ``commit``: at step k of a shard's commit (journal, data, parquet, stats renames, journal
  deleted), where the process stopped itself (``tests/freeze``).

After every kill, each shard that looks finished is whole; after the last resume every
input row is in exactly one parquet row, every tar opens, no key is duplicated and no
temporary is left. A Dagster run (``dagster asset materialize`` of one partition) is
killed at each of the three points, resumed by a new run each time. ``.ci/run`` runs the
CLI with the seeds of ``CI_SEEDS`` and Dagster with the first; more seeds for both, e.g.::

    V2D_KILL_SEEDS=0-99 python -m pytest tests/test_crash_safety.py

(``V2D_KILL_REPORT=kills.jsonl`` appends one line per seed: kill points, rows lost, duplicates.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.crash import (
    REPO,
    check_dataset,
    check_finished_shards,
    check_shard,
    cli_command,
    frozen,
    kill_when,
    nth_ffmpeg,
    run_env,
    run_to_end,
    shard_names,
    start,
)
from tests.helpers import status_rows, write_csv
from v2d_core.testing.server import MediaServer
from v2d_dagster.testing import plan_dataset

KILL_POINTS = ("fetch", "ffmpeg", "commit")
CI_SEEDS = "0,7,8,11"
KILLS_PER_SEED = 2
ROWS, PER_SHARD = 12, 3
DELAY = "delay/0.2"
ALL_KEYS = [f"{shard:05d}{row}" for shard in range(ROWS // PER_SHARD) for row in range(PER_SHARD)]
RESIZE = {"subsampling": {"ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale"}}}}


def seeds() -> list[int]:
    """The seeds of ``V2D_KILL_SEEDS`` (``0-9``, ``1,5,7``), else :data:`CI_SEEDS`."""
    chosen: list[int] = []
    for part in os.environ.get("V2D_KILL_SEEDS", CI_SEEDS).split(","):
        first, _, last = part.strip().partition("-")
        chosen += range(int(first), int(last or first) + 1)
    return chosen


@dataclass(frozen=True)
class KillPoint:
    kind: str
    occurrence: int


@dataclass
class Outcome:
    """What one seed did, for ``V2D_KILL_REPORT``."""

    entry: str
    seed: int
    points: list[KillPoint]
    killed: list[bool] = field(default_factory=list)
    rows: int = 0
    lost: int = 0
    duplicated: int = 0


def kill_point(rng: random.Random, seed: int, index: int) -> KillPoint:
    """Kind by seed and index, so any 3 consecutive seeds try all three; occurrence at random."""
    kind = KILL_POINTS[(seed + index) % len(KILL_POINTS)]
    return KillPoint(kind, rng.randint(1, 10) if kind == "commit" else rng.randint(1, 6))


Condition = Callable[[subprocess.Popen[bytes]], bool]


def arm(point: KillPoint, server: MediaServer) -> tuple[int | None, Condition]:
    """The freeze step to arm in the run's environment, and the condition to kill the run on."""
    if point.kind == "commit":
        return point.occurrence, lambda process: frozen(process)()
    if point.kind == "ffmpeg":
        ffmpeg: dict[int, Callable[[], bool]] = {}
        return None, lambda process: ffmpeg.setdefault(process.pid, nth_ffmpeg(process, point.occurrence))()
    base = server.started("delay")
    return None, lambda _: server.started("delay") - base >= point.occurrence and server.active("delay") > 0


def kill_at(
    point: KillPoint, server: MediaServer, command: list[str], log: Path, env: dict[str, str]
) -> bool:
    step, condition = arm(point, server)
    process = start(command, run_env(step, env), log)
    return kill_when(process, lambda: condition(process))


def input_rows(tmp_path: Path, server: MediaServer) -> Path:
    urls = [server.url(DELAY, f"video_000{i % 4}.mp4?row={i}") for i in range(ROWS)]
    rows = [{"url": url, "caption": f"c{i}"} for i, url in enumerate(urls)]
    return write_csv(tmp_path / "videos.csv", rows)


def report(outcome: Outcome, rows: list[dict], captions: list[str]) -> None:
    """Count lost and duplicated input rows (by caption), append them to ``V2D_KILL_REPORT`` if set."""
    counts = Counter(row["caption"] for row in rows)
    outcome.rows = len(captions)
    outcome.lost = sum(1 for caption in captions if counts[caption] == 0)
    outcome.duplicated = sum(count - 1 for count in counts.values())
    if path := os.environ.get("V2D_KILL_REPORT"):
        with open(path, "a") as handle:
            handle.write(json.dumps(asdict(outcome)) + "\n")


@pytest.mark.parametrize("seed", seeds())
def test_cli_killed_at_random_points_resumes_without_loss(
    tmp_path: Path, media_server: MediaServer, seed: int
) -> None:
    (tmp_path / "resize.yaml").write_text(yaml.safe_dump(RESIZE))
    output = tmp_path / "out"
    command = cli_command(
        f"--url_list={input_rows(tmp_path, media_server)}",
        "--input_format=csv",
        "--caption_col=caption",
        f"--output_folder={output}",
        "--output_format=webdataset",
        f"--config={tmp_path / 'resize.yaml'}",
        f"--number_sample_per_shard={PER_SHARD}",
        "--processes_count=2",
        "--thread_count=2",
        "--show_progress=False",
        f"--tmp_dir={tmp_path / 'work'}",
    )
    rng = random.Random(seed)
    outcome = Outcome("cli", seed, [kill_point(rng, seed, index) for index in range(KILLS_PER_SEED)])
    for point in outcome.points:
        outcome.killed.append(kill_at(point, media_server, command, tmp_path / "log", {}))
        check_finished_shards(output, "webdataset")
    assert outcome.killed[0], "the first run ended before its kill point"

    run_to_end(command, run_env())
    rows = status_rows(output)
    report(outcome, rows, [f"c{i}" for i in range(ROWS)])
    check_dataset(output, ALL_KEYS, "webdataset")
    assert all(row["status"] == "success" for row in rows), [row["error_message"] for row in rows]
    assert list((tmp_path / "work").iterdir()) == []  # work folders of killed runs are gone too


def test_cli_interrupted_with_ctrl_c_keeps_finished_shards(tmp_path: Path, media_server: MediaServer) -> None:
    # The last shard's rows wait behind a gate that opens only once the run's process has taken
    # the interrupt, so the run is always still working when Ctrl-C reaches it (it cannot
    # finish first and exit 0); opening it then lets the fetches it waits for end.
    gate = f"ctrl-c-{tmp_path.name}"
    last_shard = range(ROWS - PER_SHARD, ROWS)
    urls = [
        media_server.url(f"gate/{gate}" if i in last_shard else DELAY, f"video_000{i % 4}.mp4?row={i}")
        for i in range(ROWS)
    ]
    url_list = write_csv(
        tmp_path / "videos.csv", [{"url": url, "caption": f"c{i}"} for i, url in enumerate(urls)]
    )
    output = tmp_path / "out"
    command = cli_command(
        f"--url_list={url_list}",
        "--input_format=csv",
        f"--output_folder={output}",
        "--output_format=webdataset",
        f"--number_sample_per_shard={PER_SHARD}",
        "--processes_count=2",
        "--thread_count=2",
        "--timeout=600",  # the gated rows wait for the test, never for a read timeout
        f"--tmp_dir={tmp_path / 'work'}",
    )
    process = start(command, run_env(), tmp_path / "log")
    deadline = time.monotonic() + 120
    while not list(output.glob("*_stats.json")):
        assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    try:
        while sigint_pending(process.pid):
            assert time.monotonic() < deadline, "the run never took SIGINT"
            time.sleep(0.01)
    finally:
        media_server.open_gate(gate)
    assert process.wait(timeout=120) == 130, (tmp_path / "log").read_text()
    assert "run the same command to resume" in (tmp_path / "log").read_text()
    check_finished_shards(output, "webdataset")
    run_to_end(command, run_env())
    check_dataset(output, ALL_KEYS, "webdataset")


def sigint_pending(pid: int) -> bool:
    """Whether SIGINT is still queued for process ``pid`` (not yet taken by its signal handler)."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    pending = int(status["ShdPnd"], 16) | int(status["SigPnd"], 16)
    return bool(pending & (1 << (signal.SIGINT - 1)))


def dagster_dataset(folder: Path, server: MediaServer, work: Path) -> Path:
    """Dataset ``crash``: 12 rows in 4 shards, webdataset output, an ffmpeg resize per video."""
    folder.mkdir()
    input_rows(folder, server)
    settings = {
        "tmp_dir": str(work),
        "output_format": "webdataset",
        "config": RESIZE,
        "number_sample_per_shard": PER_SHARD,
        "thread_count": 2,
        "max_retries": 0,
    }
    spec = {
        "name": "crash",
        "url_list": "videos.csv",
        "input_format": "csv",
        "caption_col": "caption",
        "output_root": "out",
        "stages": {"download": settings},
    }
    (folder / "crash.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.mark.parametrize("seed", seeds() if "V2D_KILL_SEEDS" in os.environ else seeds()[:1])
def test_dagster_run_killed_at_each_point_resumes_without_loss(
    tmp_path: Path, media_server: MediaServer, seed: int
) -> None:
    """One partition's run killed at a fetch, an ffmpeg and a commit, each resumed by a new run."""
    datasets = dagster_dataset(tmp_path / "datasets", media_server, tmp_path / "work")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "deploy" / "dagster.yaml").read_text())
    env = {"DAGSTER_HOME": str(home), "V2D_DATASETS_DIR": str(datasets)}
    assert plan_dataset(home, datasets, "crash") == ["00000", "00001", "00002", "00003"]
    partition = f"{seed % 4:05d}"
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "v2d_dagster.definitions"]
    command += ["--select", "crash/download", "--partition", partition]
    rng = random.Random(seed)
    outcome = Outcome("dagster", seed, [KillPoint(kind, rng.randint(1, 3)) for kind in KILL_POINTS])
    output = datasets / "out" / "download"
    for point in outcome.points:
        outcome.killed.append(kill_at(point, media_server, command, tmp_path / "log", env))
        assert outcome.killed[-1], f"the run ended before its kill point {point}"
        if output.exists():
            check_finished_shards(output, "webdataset")

    run_to_end(command, run_env(None, env))
    assert shard_names(output) == [partition]
    rows = check_shard(output, partition, "webdataset")
    report(outcome, rows, [f"c{int(partition) * PER_SHARD + r}" for r in range(PER_SHARD)])
    assert sorted(row["key"] for row in rows) == [f"{partition}{r}" for r in range(PER_SHARD)]
    assert all(row["status"] == "success" for row in rows)
    assert [p.name for p in output.iterdir() if p.name.startswith(".")] == []
    assert list((tmp_path / "work").iterdir()) == []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert set(instance.get_materialized_partitions(dg.AssetKey(["crash", "download"]))) == {partition}
