"""Start-up: the command loads what it uses, and the engine once per run (in the workers' forkserver)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import stats, video2dataset_cli
from v2d_core.testing.server import MediaServer

# Stacks a url-list download never needs in the process that plans it.
ENGINE = ("v2d_core.shards.process", "v2d_core.subsamplers.chain", "scenedetect", "cv2", "av")
# yt-dlp (and requests under it) is not in ENGINE: every run logs yt-dlp's facts first (its version,
# plugins, PO-token providers: v2d-doctor's lines), which imports it in the planning process.
DATA = ("pyarrow", "pandas", "fsspec", "IPython")
FETCH = ("yt_dlp", "requests")


def report_loaded(modules: tuple[str, ...]) -> str:
    """Python code printing, as a json list, which of ``modules`` the process has imported."""
    return f"import json, sys; print(json.dumps(sorted(m for m in {modules!r} if sys.modules.get(m))))"


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_loads_no_engine_nor_data_stack() -> None:  # nor yt-dlp
    done = python(
        "import sys\nsys.argv = ['video2dataset', '--help']\nfrom v2d_core.cli import main\n"
        f"try:\n    main()\nexcept SystemExit:\n    pass\n{report_loaded(ENGINE + DATA + FETCH)}"
    )
    assert "--output_folder" in done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_a_download_run_never_imports_the_engine_in_the_planning_process(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url_list = tmp_path / "urls.txt"
    url_list.write_text("".join(media_server.url("files", f"video_000{i}.mp4") + "\n" for i in range(4)))
    output = tmp_path / "dataset"
    done = python(
        "from v2d_core import video2dataset\n"
        f"video2dataset({str(url_list)!r}, input_format='txt', output_folder={str(output)!r}, "
        "output_format='webdataset', "
        "processes_count=2, thread_count=2, number_sample_per_shard=2, show_progress=False)\n"
        f"{report_loaded(ENGINE)}"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert sum(shard["successes"] for shard in stats(output).values()) == 4


def test_yt_dlp_is_imported_once_per_direct_download_run_by_the_planner_for_its_facts(
    tmp_path: Path, media_server: MediaServer
) -> None:
    """Every process of the run (planner, forkserver, workers) reports its imports on stderr; yt-dlp
    (0.3 CPU-s to import) is loaded by the planning process for the log's facts and by no worker."""
    url_list = tmp_path / "urls.txt"
    url_list.write_text("".join(media_server.url("files", f"video_000{i}.mp4") + "\n" for i in range(4)))
    output = tmp_path / "dataset"
    done = video2dataset_cli(
        f"--url_list={url_list}",
        "--input_format=txt",
        f"--output_folder={output}",
        "--output_format=webdataset",
        "--processes_count=2",
        "--thread_count=2",
        "--number_sample_per_shard=1",
        "--show_progress=False",
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert sum(shard["successes"] for shard in stats(output).values()) == 4
    lines = done.stderr.splitlines()
    imports = [line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")]
    assert imports.count("v2d_core.shards.process") == 1  # the forkserver's preload, seen by this check
    assert imports.count("yt_dlp") == 1
