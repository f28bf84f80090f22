"""v2d as video2dataset 1.3.0's drop-in: its function's signature, its README's command, its flags."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import write_csv
from v2d_core.api import video2dataset
from v2d_core.testing.server import MediaServer

REQUIRED = inspect.Parameter.empty
# video2dataset 1.3.0's ``video2dataset()`` (video2dataset/main.py at tag 1.3.0): names, order, defaults.
SIGNATURE_1_3_0 = [
    ("url_list", REQUIRED),
    ("output_folder", "dataset"),
    ("output_format", "files"),
    ("input_format", "csv"),
    ("encode_formats", None),
    ("stage", "download"),
    ("url_col", "url"),
    ("caption_col", None),
    ("clip_col", None),
    ("save_additional_columns", None),
    ("enable_wandb", False),
    ("wandb_project", "video2dataset"),
    ("incremental_mode", "incremental"),
    ("max_shard_retry", 1),
    ("tmp_dir", "/tmp"),
    ("config", "default"),
]
# The first command of video2dataset's README, character for character.
SEED_COMMAND = (
    'video2dataset --url_list="videos.csv" --url_col="url" --caption_col="caption" --output_folder="dataset"'
)


def run_in(folder: Path, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` through bash in ``folder``, as a user types it; only the address guard is opened."""
    env = dict(os.environ, V2D_ALLOW_PRIVATE_NETWORKS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv's console scripts
    return subprocess.run(
        ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=280
    )


def test_every_argument_and_default_of_1_3_0_is_v2ds() -> None:
    parameters = list(inspect.signature(video2dataset).parameters.values())
    ours = [(p.name, p.default) for p in parameters[: len(SIGNATURE_1_3_0)]]
    assert ours == SIGNATURE_1_3_0  # same names in the same order: positional calls mean the same


def test_the_readme_command_works_verbatim_from_a_fresh_folder(
    tmp_path: Path, media_server: MediaServer
) -> None:
    rows = [{"url": media_server.url("files", f"video_000{i}.mp4"), "caption": f"clip {i}"} for i in range(3)]
    write_csv(tmp_path / "videos.csv", rows)
    done = run_in(tmp_path, SEED_COMMAND)
    assert done.returncode == 0, done.stderr
    assert "shards: 1 done" in done.stdout
    shard = tmp_path / "dataset" / "00000"
    assert sorted(p.name for p in shard.iterdir()) == [
        f"0000000{i}.{ext}" for i in range(3) for ext in ("json", "mp4", "txt")
    ]
    assert (shard / "00000001.txt").read_text() == "clip 1"
    assert json.loads((shard / "00000002.json").read_text())["status"] == "success"
    assert (tmp_path / "dataset" / "00000.parquet").exists()
    assert (tmp_path / "dataset" / "00000_stats.json").exists()
