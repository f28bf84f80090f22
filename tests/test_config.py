"""Config files in video2dataset's YAML shape, presets, flag overrides and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from v2d_core.api import apply_overrides, video2dataset
from v2d_core.config import Config, preset_names
from v2d_core.errors import ConfigError
from v2d_core.job import JobConfig
from v2d_dagster.spec import load_dataset

VIDEO2DATASET_FILE = """
subsampling: {}
reading:
    yt_args:
        download_size: 720
        download_audio_rate: 44100
        yt_metadata_args:
            writesubtitles: True
            subtitleslangs: ['en']
            get_info: True
    timeout: 30
    sampler: null
storage:
    number_sample_per_shard: 100
    oom_shard_count: 6
    captions_are_subtitles: False
distribution:
    processes_count: 4
    thread_count: 8
    subjob_size: 1000
    distributor: "multiprocessing"
"""


def test_a_video2dataset_config_file_loads_as_is(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(VIDEO2DATASET_FILE)
    config = Config.load(str(path))
    assert config.reading.yt_args.download_size == 720
    assert config.reading.yt_args.yt_metadata_args == {
        "writesubtitles": True,
        "subtitleslangs": ["en"],
        "get_info": True,
    }
    assert (config.reading.timeout, config.storage.number_sample_per_shard) == (30, 100)
    assert (config.distribution.processes_count, config.distribution.thread_count) == (4, 8)
    job = JobConfig(url_list="x.txt", config=config)
    assert job.sample_key(42, 3) == "00004203"


def test_default_preset_matches_video2dataset_defaults() -> None:
    assert "default" in preset_names()
    config = Config.load("default")
    assert config.storage.number_sample_per_shard == 1000 and config.storage.oom_shard_count == 5
    assert (config.distribution.processes_count, config.distribution.thread_count) == (16, 32)
    assert JobConfig(url_list="x", config=config).sample_key(42, 3) == "00042003"


def test_flags_override_the_section_that_owns_them() -> None:
    config = apply_overrides(Config.load("default"), {"thread_count": 2, "timeout": 5, "oom_shard_count": 3})
    assert config.distribution.thread_count == 2
    assert config.reading.timeout == 5
    assert JobConfig(url_list="x", config=config).shard_name(7) == "007"


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"storage": {"number_sample_per_shards": 10}}, "number_sample_per_shards"),
        ({"readings": {}}, "readings"),
        ({"reading": {"timeout": -1}}, "reading.timeout"),
        ({"reading": {"timeout": "soon"}}, "reading.timeout"),
        ({"reading": {"yt_args": {"download_sizes": 3}}}, "download_sizes"),
        ({"distribution": {"distributor": "ray"}}, "ray"),
        ({"distribution": {"thread_count": 0}}, "thread_count"),
    ],
)
def test_bad_keys_and_values_are_errors_that_name_them(data: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Config.from_mapping(data)


def test_unknown_preset_or_missing_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="neither a preset"):
        Config.load("/no/such/config.yaml")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"output_format": "mp4"}, "output_format"),
        ({"input_format": "xlsx"}, "input_format"),
        ({"incremental_mode": "append"}, "incremental_mode"),
        ({"encode_formats": {"subtitles": "srt"}}, "subtitles"),
    ],
)
def test_bad_job_options_are_errors_that_name_them(options: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        JobConfig(url_list="x", **options)


TYPO = {"ResolutionSubsampler": {"args": {"video_siz": 224, "resize_mode": "scale"}}}


def test_subsampling_is_typed_when_the_config_is_built() -> None:
    config = Config.from_mapping(
        {"subsampling": {"ResolutionSubsampler": {"args": {"video_size": 224, "resize_mode": "scale"}}}}
    )
    assert config.subsampling.resolution is not None and config.subsampling.resolution.target_height == 224
    with pytest.raises(ConfigError, match=r"video_siz; known: .*video_size"):
        Config.from_mapping({"subsampling": TYPO})


def test_a_subsampler_typo_stops_the_run_before_any_work(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with pytest.raises(ConfigError, match="video_siz"):
        video2dataset(
            url_list=str(tmp_path / "x.csv"), output_folder=str(output), config={"subsampling": TYPO}
        )
    with pytest.raises(ConfigError, match="video_siz"):
        video2dataset(url_list=str(tmp_path / "x.csv"), output_folder=str(output), subsampling=TYPO)
    assert not output.exists()


def test_a_subsampler_typo_fails_the_dagster_dataset_file_when_definitions_load(tmp_path: Path) -> None:
    path = tmp_path / "typo.yaml"
    dataset = {"name": "typo", "url_list": "x.csv", "output_root": "out"}
    path.write_text(yaml.safe_dump(dataset | {"stages": {"download": {"config": {"subsampling": TYPO}}}}))
    with pytest.raises(ConfigError, match=r"typo\.yaml.*video_siz"):
        load_dataset(path)
