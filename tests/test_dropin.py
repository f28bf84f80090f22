"""v2d as video2dataset 1.3.0's drop-in: its function's signature, its README's command, its flags."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import write_csv
from v2d_core.api import apply_overrides, video2dataset
from v2d_core.config import Config, DistributionConfig, ReadingConfig, StorageConfig, YtArgs
from v2d_core.errors import ConfigError
from v2d_core.job import JobConfig
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


# --- every nested field is a flag, checked before any work ------------------------------------


def test_nested_fields_are_flags(tmp_path: Path, media_server: MediaServer) -> None:
    write_csv(tmp_path / "videos.csv", [{"url": media_server.url("files", "video_0000.mp4"), "caption": "c"}])
    done = run_in(
        tmp_path,
        SEED_COMMAND + """ --yt_args='{"download_size": 240, "yt_metadata_args": None}'"""
        """ --distributor_args='{"cpus_per_task": 2}' --processes_count 1""",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "dataset" / "00000" / "00000000.json").read_text())["status"] == "success"
    config = apply_overrides(Config.load("default"), {"yt_args": {"download_size": 240}})
    assert config.reading.yt_args == YtArgs(download_size=240)


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("""--yt_args='{"download_siz": 360}'""", "download_siz"),
        ("""--yt_args='{"ytdl_options": {"outtmpl": "/etc/x"}}'""", "outtmpl"),
        ("""--distributor_args='{"cpus_per_tasks": 2}'""", "cpus_per_tasks"),
        ("""--subsampling='{"ResolutionSubsampler": {"args": {"video_siz": 224}}}'""", "video_siz"),
        ("--config=typo.yaml", "video_siz"),
        ("--timeout=-1", "reading.timeout"),
        ("--procesess_count=2", "procesess_count"),
    ],
)
def test_a_bad_value_exits_2_naming_the_key_and_writes_nothing(tmp_path: Path, flag: str, named: str) -> None:
    (tmp_path / "videos.csv").write_text("url,caption\nhttp://127.0.0.1:9/x.mp4,c\n")
    typo = {"ResolutionSubsampler": {"args": {"video_siz": 224, "resize_mode": "scale"}}}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump({"subsampling": typo}))
    done = run_in(tmp_path, f"{SEED_COMMAND} {flag}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("video2dataset: error:") and named in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["typo.yaml", "videos.csv"]


def test_unknown_key_errors_list_every_real_key() -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_mapping({"reading": {"timeouts": 1}})
    for key in (f.name for f in dataclasses.fields(ReadingConfig)):
        assert key in str(error.value)
    assert "dataloader_args" in str(error.value) and "sampler" in str(error.value)
    with pytest.raises(ConfigError) as error:
        apply_overrides(Config(), {"no_such_flag": 1})
    for section in (ReadingConfig, StorageConfig, DistributionConfig):
        for key in (f.name for f in dataclasses.fields(section)):
            assert key in str(error.value)
    for name, _ in SIGNATURE_1_3_0:
        assert name in str(error.value)


@pytest.mark.parametrize("metadata", [None, {"get_info": True}, {"writesubtitles": "first"}])
def test_captions_are_subtitles_turns_subtitle_fetching_on(metadata: dict | None) -> None:
    config = Config.from_mapping(
        {"reading": {"yt_args": {"yt_metadata_args": metadata}}, "storage": {"captions_are_subtitles": True}}
    )
    fetched = config.reading.yt_args.yt_metadata_args
    assert fetched is not None and fetched["writesubtitles"] == (metadata or {}).get("writesubtitles", "all")
    with pytest.raises(ConfigError, match="clip_col"):
        JobConfig(url_list="x.csv", clip_col="spans", config=config)


def test_distributor_args_are_spark_settings_for_pyspark_and_slurm_arguments_otherwise() -> None:
    spark = Config.from_mapping(
        {"distribution": {"distributor": "pyspark", "distributor_args": {"spark.ui.enabled": "false"}}}
    )
    assert spark.distribution.distributor_args == {"spark.ui.enabled": "false"}
    with pytest.raises(ConfigError, match="cpus_per_task"):
        Config.from_mapping(
            {"distribution": {"distributor": "pyspark", "distributor_args": {"cpus_per_task": 2}}}
        )
    slurm_keys = {"cpus_per_task": 16, "job_name": "v2ds", "partition": "p", "n_nodes": 2, "account": "a"}
    kept = Config.from_mapping({"distribution": {"distributor_args": slurm_keys}})
    assert kept.distribution.distributor_args == slurm_keys
