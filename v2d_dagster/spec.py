"""Dataset specs: one YAML file per dataset, read into frozen records the asset factory builds from.

A dataset file names its input the way the ``video2dataset`` command does, then one
section per stage in the command's config shape::

    name: example                      # asset key prefix and group; letters, digits, _
    url_list: example/videos.csv       # relative paths are relative to this file
    input_format: csv
    url_col: url
    caption_col: caption
    save_additional_columns: []
    output_root: ../data/example       # {output_root}/_shard_inputs, {output_root}/download, ...
    stages:
      download:
        output_format: webdataset
        encode_formats: {video: mp4}
        config: default                # a preset, a YAML path, or a mapping
        number_sample_per_shard: 4     # any other key is a flat override, as on the command line
        processes_count: 2
        shards_per_run: 4              # orchestration: shards per backfill run
        min_success_rate: 0.5          # orchestration: floor of the success_rate check
        max_retries: 2                 # orchestration: Dagster RetryPolicy for the stage

This module never imports dagster: it only turns files into :class:`DatasetSpec` and
:class:`~v2d_core.job.JobConfig` values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import yaml

from v2d_core.api import apply_overrides
from v2d_core.config import Config, preset_names
from v2d_core.errors import ConfigError, V2DError
from v2d_core.job import JobConfig

DATASETS_DIR_ENV = "V2D_DATASETS_DIR"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
SHARD_INPUTS = "_shard_inputs"

# Stages the core can run today, in graph order; each reads the one before it (download reads the plan).
AVAILABLE_STAGES = ("download",)


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One stage's settings: the command's options plus how Dagster should schedule it."""

    name: str
    output_format: str = "files"
    encode_formats: Mapping[str, str] = field(default_factory=lambda: {"video": "mp4"})
    config: str | Mapping[str, Any] = "default"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    max_shard_retry: int = 1
    tmp_dir: str = "/tmp"
    shards_per_run: int = 4
    min_success_rate: float = 0.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.name not in AVAILABLE_STAGES:
            raise ConfigError(
                f"stage {self.name!r} is not available; choose from {', '.join(AVAILABLE_STAGES)}"
            )
        if isinstance(self.shards_per_run, bool) or not isinstance(self.shards_per_run, int):
            raise ConfigError(f"shards_per_run must be an integer, got {self.shards_per_run!r}")
        if self.shards_per_run < 1:
            raise ConfigError(f"shards_per_run must be >= 1, got {self.shards_per_run}")
        if not 0.0 <= self.min_success_rate <= 1.0:
            raise ConfigError(f"min_success_rate must be between 0 and 1, got {self.min_success_rate}")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")


STAGE_OPTIONS = {f.name for f in dataclasses.fields(StageSpec)} - {"name", "overrides"}


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """One dataset: where its rows come from, where its shards go, and its stages in order."""

    name: str
    url_list: str | Sequence[str]
    output_root: str
    input_format: str = "txt"
    url_col: str = "url"
    caption_col: str | None = None
    clip_col: str | None = None
    save_additional_columns: Sequence[str] = ()
    description: str | None = None
    stages: Mapping[str, StageSpec] = field(default_factory=dict)
    source_file: str | None = None

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"dataset name {self.name!r} must start with a letter and hold only letters, digits, _"
            )
        if self.input_format == "webdataset":
            raise ConfigError("an input webdataset needs the subset stage, which v2d_core does not run yet")
        if "download" not in self.stages:
            raise ConfigError("a dataset needs a 'download' stage")

    @property
    def shard_input_dir(self) -> str:
        """Where the shard plan writes each shard's input rows and its manifest."""
        return f"{self.output_root}/{SHARD_INPUTS}"

    def stage_folder(self, stage: str) -> str:
        """The output folder of ``stage``: ``{output_root}/{stage}``."""
        return f"{self.output_root}/{stage}"

    def job(self, stage: str) -> JobConfig:
        """The validated core job for ``stage``, reading this dataset's url list."""
        settings = self.stages[stage]
        return JobConfig(
            url_list=self.url_list,
            output_folder=self.stage_folder(stage),
            output_format=settings.output_format,
            input_format=self.input_format,
            encode_formats=dict(settings.encode_formats),
            stage=stage,
            url_col=self.url_col,
            caption_col=self.caption_col,
            clip_col=self.clip_col,
            save_additional_columns=list(self.save_additional_columns),
            incremental_mode="incremental",
            max_shard_retry=settings.max_shard_retry,
            tmp_dir=settings.tmp_dir,
            config=apply_overrides(Config.load(settings.config), settings.overrides),
        )

    def plan_job(self) -> JobConfig:
        """The job whose input settings cut the url list into shards (the first stage's)."""
        return self.job("download")


def stage_version(job: JobConfig) -> str:
    """A short hash of every setting that changes what ``job`` writes (not how many processes run it)."""
    config = dataclasses.asdict(job.config)
    config.pop("distribution")
    config["reading"].pop("sampler", None)
    return _digest(
        {
            "stage": job.stage,
            "output_format": job.output_format,
            "encode_formats": dict(job.encode_formats),
            "columns": _columns(job),
            "config": config,
        }
    )


def plan_version(job: JobConfig) -> str:
    """A short hash of the settings that decide shard ids and each shard's rows."""
    return _digest(
        {
            "url_list": job.url_list if isinstance(job.url_list, str) else list(job.url_list),
            "input_format": job.input_format,
            "columns": _columns(job),
            "storage": dataclasses.asdict(job.config.storage),
        }
    )


def _columns(job: JobConfig) -> dict[str, Any]:
    return {
        "url_col": job.url_col,
        "caption_col": job.caption_col,
        "clip_col": job.clip_col,
        "save_additional_columns": list(job.save_additional_columns),
    }


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def datasets_dir() -> Path:
    """The folder of dataset files: ``$V2D_DATASETS_DIR``, else ``./datasets``."""
    return Path(os.environ.get(DATASETS_DIR_ENV, "datasets"))


def load_datasets(folder: str | os.PathLike[str] | None = None) -> list[DatasetSpec]:
    """Every ``*.yaml`` / ``*.yml`` dataset in ``folder``, sorted by name; names must be unique."""
    root = Path(folder) if folder is not None else datasets_dir()
    if not root.is_dir():
        raise ConfigError(
            f"dataset folder {root.resolve()} does not exist; "
            f"set {DATASETS_DIR_ENV} to a folder of dataset YAML files"
        )
    specs = [load_dataset(path) for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")])]
    seen: dict[str, str | None] = {}
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(
                f"dataset {spec.name!r} is declared twice: {seen[spec.name]} and {spec.source_file}"
            )
        seen[spec.name] = spec.source_file
    return sorted(specs, key=lambda spec: spec.name)


DATASET_KEYS = {f.name for f in dataclasses.fields(DatasetSpec)} - {"source_file"}


def load_dataset(path: str | os.PathLike[str]) -> DatasetSpec:
    """Read one dataset file; every error names the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
        spec = dataset_from_mapping(data, base=path.parent)
        for stage in spec.stages:
            spec.job(stage)  # validate every stage's config now, not at the first run
    except (V2DError, yaml.YAMLError, TypeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return dataclasses.replace(spec, source_file=str(path))


def dataset_from_mapping(data: Mapping[str, Any], base: Path) -> DatasetSpec:
    """A dataset from its parsed YAML; relative paths are taken from ``base``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a dataset file must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - DATASET_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown dataset key(s): {', '.join(unknown)}; known: {', '.join(sorted(DATASET_KEYS))}"
        )
    for required in ("name", "url_list", "output_root"):
        if not data.get(required):
            raise ConfigError(f"a dataset needs {required!r}")
    stages = data.get("stages") or {}
    if not isinstance(stages, Mapping):
        raise ConfigError("stages must be a mapping of stage name to settings")
    options = {key: value for key, value in data.items() if key != "stages"}
    url_list = options["url_list"]
    options["url_list"] = (
        _resolve(url_list, base) if isinstance(url_list, str) else [_resolve(u, base) for u in url_list]
    )
    options["output_root"] = _resolve(str(options["output_root"]), base).rstrip("/")
    options["save_additional_columns"] = tuple(options.get("save_additional_columns") or ())
    return DatasetSpec(
        **options,
        stages={name: stage_from_mapping(name, settings or {}, base) for name, settings in stages.items()},
    )


def stage_from_mapping(name: str, data: Mapping[str, Any], base: Path) -> StageSpec:
    """A stage's settings; keys that are not stage options become flat config overrides."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"stage {name!r} must be a mapping of settings")
    options = {key: value for key, value in data.items() if key in STAGE_OPTIONS}
    overrides = {key: value for key, value in data.items() if key not in STAGE_OPTIONS}
    config = options.get("config")
    if isinstance(config, str) and config not in preset_names():
        options["config"] = _resolve(config, base)
    return StageSpec(name=name, overrides=overrides, **options)


def _resolve(path: str, base: Path) -> str:
    """``path`` made absolute against ``base`` when it is a relative local path."""
    protocol = fsspec.core.split_protocol(path)[0]
    if protocol not in (None, "file") or os.path.isabs(path):
        return path
    return str((base / path).resolve())
