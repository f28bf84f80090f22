"""Watching a run: the CLI's live progress bar and closing summary, and the same figures in W&B."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import stats, status_rows, video2dataset_cli
from v2d_core import video2dataset
from v2d_core.errors import ConfigError
from v2d_core.runners.events import SampleEvent
from v2d_core.runners.progress import Progress
from v2d_core.shards import ShardStats
from v2d_core.testing.media import make_video
from v2d_core.testing.server import MediaServer

# One bar state as tqdm draws it: "7/13 [00:01<00:01, 5.29row/s, videos/s=2.1, bytes/s=102kB, failed=3]"
BAR = re.compile(r"(\d+)/(\d+) \[[^\]]*videos/s=([\d.]+), bytes/s=([\d.]+)([kMGT]?)B, failed=(\d+)\]")
SHARD_SIZE = 5


@pytest.fixture(scope="module")
def server(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    """Two good videos and a one-frame video (optical flow fails on it) on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("observability_media")
    for name in ("video_0000.mp4", "video_0001.mp4"):
        shutil.copy(media_dir / name, folder / name)
    make_video(folder / "still.mp4", seconds=0.04)
    with MediaServer(folder) as served:
        yield served


@pytest.fixture
def url_list(tmp_path: Path, server: MediaServer) -> Path:
    """13 rows in 3 shards: 7 good, 3 x the same 404, 2 one-frame videos, 1 web page."""
    urls = [server.url("files", f"video_000{i % 2}.mp4?row={i}") for i in range(6)]
    urls += [server.url("status/404", "missing.mp4")] * 3
    urls += [server.url("files", "still.mp4")] * 2
    urls += [server.url("page", "x.mp4"), server.url("delay/0.5", "video_0000.mp4")]
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(urls) + "\n")
    return path


def run_cli(url_list: Path, output: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    done = video2dataset_cli(
        f"--url_list={url_list}",
        "--input_format=txt",
        f"--output_folder={output}",
        "--config=optical_flow",
        "--processes_count=2",
        "--thread_count=2",
        f"--number_sample_per_shard={SHARD_SIZE}",
        *flags,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def errors_in_parquet(output: Path) -> Counter[str]:
    return Counter(row["error_message"] for row in status_rows(output) if row["status"] != "success")


def test_progress_bar_is_live_and_the_summary_counts_what_the_parquet_holds(
    tmp_path: Path, url_list: Path
) -> None:
    output = tmp_path / "out"
    stdout, stderr = run_cli(url_list, output)

    rows = status_rows(output)
    statuses = Counter(row["status"] for row in rows)
    assert statuses == {"success": 7, "failed_to_download": 4, "failed_to_subsample": 2}
    states = [match.groups() for match in BAR.finditer(stderr)]
    done = [int(state[0]) for state in states]
    failed = [int(state[5]) for state in states]
    assert any(0 < n < len(rows) for n in done), stderr  # the bar moved while the run went on
    assert done[-1] == len(rows) and failed[-1] == 6, stderr
    assert failed == sorted(failed)
    assert float(states[-1][2]) > 0 and float(states[-1][3]) > 0  # videos/s and bytes/s

    lines = stdout.splitlines()
    assert "shards: 3 done, 0 skipped (done before), 0 failed" in lines
    assert "samples: 13, success: 7, failed_to_download: 4, failed_to_subsample: 2" in lines
    shard_bytes = sum(shard["bytes_downloaded"] for shard in stats(output).values())
    assert shard_bytes > 0
    assert any(line.startswith(f"bytes: {shard_bytes} ") and "videos/s: " in line for line in lines)
    errors = errors_in_parquet(output)
    assert len(errors) == 3 and errors.most_common(1)[0][1] == 3
    top = lines[lines.index("top errors (of 3 distinct):") + 1 :]
    assert top == [f"{count:>8}  {message}" for message, count in errors.most_common()]


def test_a_bar_behind_its_rows_is_redrawn_when_no_report_follows(capsys: pytest.CaptureFixture[str]) -> None:
    row = SampleEvent(shard_id=0, status="success", bytes=1000)
    with Progress(total=10) as progress:
        progress.samples_done((row,))
        progress.samples_done((row,) * 4)  # within tqdm's mininterval: not drawn by the update
        progress.redraw()  # what the bar's own thread does when no report follows
        drawn = [int(match.group(1)) for match in BAR.finditer(capsys.readouterr().err)]
    assert drawn[-1] == 5


def test_a_shard_counted_at_once_reaches_the_bar_before_the_next_shard(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shard = ShardStats(count=5, successes=4, failed_to_download=1, bytes_downloaded=1000)
    with Progress(total=10) as progress:  # Spark and Slurm count a whole shard as it commits
        progress.shard_counted(0, shard)
        progress.shard_counted(1, shard)  # within tqdm's mininterval: not drawn by the update
        drawn = ""
        for _ in range(300):  # the redraw comes after REDRAW_AFTER; a busy machine may delay it
            drawn += capsys.readouterr().err
            if "10/10" in drawn:
                break
            time.sleep(0.1)
    assert [int(match.group(1)) for match in BAR.finditer(drawn)][-1] == 10


def test_wandb_offline_run_logs_the_figures_and_an_error_table_equal_to_the_parquet(
    tmp_path: Path, url_list: Path
) -> None:
    wandb_dir = tmp_path / "wandb_home"
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(wandb_dir),
        "WANDB_CACHE_DIR": str(wandb_dir / "cache"),
        "WANDB_DATA_DIR": str(wandb_dir / "data"),
        "WANDB_CONFIG_DIR": str(wandb_dir / "config"),
        "WANDB_ERROR_REPORTING": "false",
    }
    output = tmp_path / "out"
    run_cli(url_list, output, "--enable_wandb=True", "--wandb_project=v2d-test", env=env)

    (run_dir,) = (wandb_dir / "wandb").glob("offline-run-*")
    history = [record["history"]["item"] for record in _records(run_dir, env) if record["type"] == "history"]
    *live, final = history
    rows = status_rows(output)
    statuses = Counter(row["status"] for row in rows)

    assert final["successes"] == statuses["success"] == 7
    assert final["failures"] == len(rows) - statuses["success"]
    assert final["failed_to_download"] == statuses["failed_to_download"]
    assert final["failed_to_subsample"] == statuses["failed_to_subsample"]
    assert (final["samples"], final["shards_done"], final["shards_failed"]) == (len(rows), 3, 0)
    assert final["bytes"] == sum(shard["bytes_downloaded"] for shard in stats(output).values())
    assert final["videos_per_second"] > 0
    assert len(live) >= 3  # a log as each shard is committed (and every 30 s), then the final one
    samples = [item["samples"] for item in live]
    assert samples[0] < len(rows) and samples == sorted(samples)

    table = json.loads((run_dir / "files" / final["errors.path"]).read_text())
    assert table["columns"] == ["error_message", "rows", "sample_key", "sample_url"]
    by_key = {row["key"]: row for row in rows}
    assert {message: count for message, count, _, _ in table["data"]} == errors_in_parquet(output)
    for message, _, key, url in table["data"]:
        assert by_key[key]["error_message"] == message and by_key[key]["url"] == url


def test_enable_wandb_without_the_extra_names_it_before_any_work(
    tmp_path: Path, url_list: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an environment without wandb sees
    output = tmp_path / "out"
    with pytest.raises(ConfigError, match=re.escape("pip install 'v2d[wandb]'")):
        video2dataset(
            url_list=str(url_list), input_format="txt", output_folder=str(output), enable_wandb=True
        )
    assert not output.exists()


def _records(run_dir: Path, env: dict[str, str]) -> list[dict]:
    """The records of the run's ``.wandb`` transaction log, read by wandb's own ``leet inspect``."""
    done = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
