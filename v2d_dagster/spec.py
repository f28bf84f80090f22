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
    automation: false                  # true: stages run when their upstream shard lands, a sensor
                                       # re-plans when the url list grows, schedules start running
    automation_interval_seconds: 30    # how often those sensors look
    upstream_asset: other/download     # optional: the asset whose output this dataset's input is (its
                                       # tars), drawn upstream of shard_plan in the asset graph
    schedules:                         # stage -> cron: re-process every shard periodically
      downsample: "0 3 * * 0"
    stages:
      download:
        output_format: webdataset
        encode_formats: {video: mp4}
        config: default                # a preset, a YAML path, or a mapping
        number_sample_per_shard: 4     # any other key is a flat override, as on the command line
        processes_count: 2
        shards_per_run: 4              # orchestration: shards per backfill run
        backfill: multi_run            # or single_run: a whole backfill in one run, on its process pool
        min_success_rate: 0.5          # orchestration: floor of the success_rate check; a shard below it
                                       # never replaces a better one (run config force: true does)
        max_success_drop: 0.2          # optional: nor one more than this below the shard it replaces
        max_retries: 2                 # orchestration: Dagster RetryPolicy; the only shard retries
        pool: v2d_fetch                # orchestration: the Dagster pool of its steps (default by stage)
        k8s_resources:                 # orchestration: the stage's pod on Kubernetes (v2d_dagster.k8s)
          requests: {cpu: "2", memory: 2Gi}
      downsample: {}                   # the subset stage with the downsample_ml preset
      optical_flow: {}                 # flow arrays (npy) and their json

The stages of :data:`STAGE_KINDS`: a url-list dataset has ``download`` and may re-process
its tars with ``downsample`` and ``optical_flow``; a dataset whose ``input_format`` is
``webdataset`` names existing tars (``00042.tar``...) as its ``url_list`` and runs
``subset``, ``downsample`` or ``optical_flow`` on them. Shard ids never change across stages.

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

from v2d_core.api import load_config
from v2d_core.config import preset_names
from v2d_core.errors import ConfigError, V2DError
from v2d_core.job import JobConfig
from v2d_core.shards.gate import ReplaceGate
from v2d_dagster.k8s import stage_resources

DATASETS_DIR_ENV = "V2D_DATASETS_DIR"
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
UPSTREAM_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*/[A-Za-z][A-Za-z0-9_]*$")
SHARD_INPUTS = "_shard_inputs"


@dataclass(frozen=True, slots=True)
class StageKind:
    """What a stage is: the core stage it runs and its defaults where the dataset file is silent."""

    core_stage: str
    config: str
    encode_formats: Mapping[str, str]
    output_format: str
    reads_tars: bool  # True: reads the dataset's video tars (download's, or the input webdataset)
    pool: str  # the Dagster concurrency pool of its steps, by kind of work


VIDEO = {"video": "mp4"}
FETCH_POOL, TRANSCODE_POOL, ANALYSIS_POOL = "v2d_fetch", "v2d_transcode", "v2d_analysis"
# Stages in graph order. download reads the url list's shards; the others read tars.
STAGE_KINDS: Mapping[str, StageKind] = {
    "download": StageKind("download", "default", VIDEO, "files", reads_tars=False, pool=FETCH_POOL),
    "subset": StageKind("subset", "default", VIDEO, "webdataset", reads_tars=True, pool=TRANSCODE_POOL),
    "downsample": StageKind(
        "subset", "downsample_ml", VIDEO, "webdataset", reads_tars=True, pool=TRANSCODE_POOL
    ),
    "optical_flow": StageKind(
        "optical_flow", "optical_flow", {}, "webdataset", reads_tars=True, pool=ANALYSIS_POOL
    ),
}
BACKFILL_POLICIES = ("multi_run", "single_run")
AVAILABLE_STAGES = tuple(STAGE_KINDS)


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """One stage's settings: the command's options plus how Dagster should schedule it."""

    name: str
    output_format: str = "files"
    encode_formats: Mapping[str, str] = field(default_factory=lambda: {"video": "mp4"})
    config: str | Mapping[str, Any] = "default"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    tmp_dir: str = "/tmp"
    shards_per_run: int = 4
    backfill: str = "multi_run"
    min_success_rate: float = 0.0
    max_success_drop: float | None = None
    max_retries: int = 2
    pool: str | None = None
    k8s_resources: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> StageKind:
        return STAGE_KINDS[self.name]

    @property
    def pool_name(self) -> str:
        """The Dagster pool of the stage's steps: ``pool``, else its kind's."""
        return self.pool or self.kind.pool

    @property
    def gate(self) -> ReplaceGate:
        """When a new version of a shard may replace the one written before."""
        return ReplaceGate(min_success_rate=self.min_success_rate, max_drop=self.max_success_drop)

    @property
    def resources(self) -> dict[str, dict[str, str]]:
        """Requests and limits of the stage's pod on Kubernetes: its defaults with ``k8s_resources``."""
        return stage_resources(self.name, self.k8s_resources)

    def __post_init__(self) -> None:
        if self.name not in AVAILABLE_STAGES:
            raise ConfigError(
                f"stage {self.name!r} is not available; choose from {', '.join(AVAILABLE_STAGES)}"
            )
        if isinstance(self.shards_per_run, bool) or not isinstance(self.shards_per_run, int):
            raise ConfigError(f"shards_per_run must be an integer, got {self.shards_per_run!r}")
        if self.shards_per_run < 1:
            raise ConfigError(f"shards_per_run must be >= 1, got {self.shards_per_run}")
        if self.backfill not in BACKFILL_POLICIES:
            raise ConfigError(
                f"backfill must be one of {', '.join(BACKFILL_POLICIES)}, got {self.backfill!r}"
            )
        if self.pool is not None and not (isinstance(self.pool, str) and self.pool.strip()):
            raise ConfigError(f"pool must be a non-empty name, got {self.pool!r}")
        self.gate  # noqa: B018 -- validates min_success_rate and max_success_drop
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        stage_resources(self.name, self.k8s_resources)  # a bad quantity fails at load, not at a run


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
    automation: bool = False
    automation_interval_seconds: int = 30
    schedules: Mapping[str, str] = field(default_factory=dict)
    upstream_asset: str | None = None
    source_file: str | None = None

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"dataset name {self.name!r} must start with a letter and hold only letters, digits, _"
            )
        if not isinstance(self.automation, bool):
            raise ConfigError(f"automation must be true or false, got {self.automation!r}")
        interval = self.automation_interval_seconds
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"automation_interval_seconds must be an integer >= 1, got {interval!r}")
        self._check_stages()
        if self.upstream_asset is not None and not UPSTREAM_PATTERN.match(str(self.upstream_asset)):
            raise ConfigError(f"upstream_asset must be 'dataset/stage', got {self.upstream_asset!r}")
        unknown = sorted(set(self.schedules) - set(self.stages))
        if unknown:
            raise ConfigError(f"schedules name stage(s) the dataset does not have: {', '.join(unknown)}")

    def _check_stages(self) -> None:
        if self.input_is_tars:
            if "download" in self.stages:
                raise ConfigError(
                    "an input webdataset needs no download: use subset, downsample or optical_flow"
                )
            if not self.stages:
                raise ConfigError("an input webdataset needs a stage: subset, downsample or optical_flow")
            return
        if "download" not in self.stages:
            raise ConfigError("a dataset needs a 'download' stage")
        if "subset" in self.stages:
            raise ConfigError("subset reads an input webdataset; use downsample to re-process downloads")
        readers = [name for name, stage in self.stages.items() if stage.kind.reads_tars]
        if readers and self.stages["download"].output_format != "webdataset":
            raise ConfigError(
                f"{', '.join(readers)} read(s) the download tars: set the download stage's output_format "
                "to webdataset"
            )

    @property
    def input_is_tars(self) -> bool:
        """Whether the dataset's input is an existing webdataset (tars) rather than a url list."""
        return self.input_format == "webdataset"

    @property
    def shard_input_dir(self) -> str:
        """Where the shard plan writes each shard's input rows and its manifest."""
        return f"{self.output_root}/{SHARD_INPUTS}"

    def upstream_stage(self, stage: str) -> str | None:
        """The stage whose shards ``stage`` reads (``download``), or None when it reads the plan's."""
        reads_download = self.stages[stage].kind.reads_tars and not self.input_is_tars
        return "download" if reads_download else None

    def stage_folder(self, stage: str) -> str:
        """The output folder of ``stage``: ``{output_root}/{stage}``."""
        return f"{self.output_root}/{stage}"

    def job(self, stage: str) -> JobConfig:
        """The validated core job for ``stage``, reading this dataset's url list, input tars or
        the tars of the stage it reads."""
        settings = self.stages[stage]
        upstream = self.upstream_stage(stage)
        columns: dict[str, Any] = {}
        if not settings.kind.reads_tars:  # the url list's columns; tars carry their own
            columns = {
                "url_col": self.url_col,
                "caption_col": self.caption_col,
                "clip_col": self.clip_col,
                "save_additional_columns": list(self.save_additional_columns),
            }
        return JobConfig(
            url_list=self.stage_folder(upstream) if upstream else self.url_list,
            output_folder=self.stage_folder(stage),
            output_format=settings.output_format,
            input_format="webdataset" if settings.kind.reads_tars else self.input_format,
            encode_formats=dict(settings.encode_formats),
            stage=settings.kind.core_stage,
            **columns,
            incremental_mode="incremental",
            max_shard_retry=0,  # Dagster's RetryPolicy (max_retries) is the one retry of a shard
            tmp_dir=settings.tmp_dir,
            config=load_config(settings.config, settings.overrides),
            replace_gate=settings.gate,
        )

    def plan_job(self) -> JobConfig:
        """The job whose input settings cut the input into shards (the first stage's)."""
        return self.job(next(name for name in self.stages if self.upstream_stage(name) is None))


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
    """Every dataset in ``folder``, sorted by name; names must be unique.

    A dataset is a ``*.yaml`` / ``*.yml`` file, or a ``{dataset}/defs.yaml`` Dagster component
    instance (a folder of the ``dg`` project's defs) whose ``attributes`` hold the same keys.
    """
    root = Path(folder) if folder is not None else datasets_dir()
    if not root.is_dir():
        raise ConfigError(
            f"dataset folder {root.resolve()} does not exist; "
            f"set {DATASETS_DIR_ENV} to a folder of dataset YAML files"
        )
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml"), *root.glob(f"*/{COMPONENT_FILE}")])
    specs = [load_dataset(path) for path in files]
    seen: dict[str, str | None] = {}
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(
                f"dataset {spec.name!r} is declared twice: {seen[spec.name]} and {spec.source_file}"
            )
        seen[spec.name] = spec.source_file
    return sorted(specs, key=lambda spec: spec.name)


DATASET_KEYS = {f.name for f in dataclasses.fields(DatasetSpec)} - {"source_file"}
COMPONENT_FILE = "defs.yaml"
COMPONENT_TYPE = "v2d_dagster.components.Dataset"


def load_dataset(path: str | os.PathLike[str]) -> DatasetSpec:
    """Read one dataset file (or component instance's ``defs.yaml``); every error names the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {error}") from None
    if path.name == COMPONENT_FILE:
        if not isinstance(data, Mapping) or data.get("type") != COMPONENT_TYPE:
            raise ConfigError(f"{path}: a dataset component needs 'type: {COMPONENT_TYPE}'")
        data = data.get("attributes") or {}
    return dataset_from_file(data, path)


def dataset_from_file(data: Mapping[str, Any], path: Path) -> DatasetSpec:
    """The dataset ``path`` declares as ``data``, every stage's config validated; errors name the file."""
    try:
        spec = dataset_from_mapping(data, base=path.parent)
        for stage in spec.stages:
            spec.job(stage)  # validate every stage's config now, not at the first run
    except (V2DError, TypeError) as error:
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
    schedules = options.get("schedules") or {}
    if not isinstance(schedules, Mapping) or not all(isinstance(v, str) for v in schedules.values()):
        raise ConfigError('schedules must map a stage to a cron string, e.g. {downsample: "0 3 * * 0"}')
    options["schedules"] = dict(schedules)
    ordered = sorted(stages.items(), key=lambda item: _stage_order(item[0]))
    return DatasetSpec(
        **options,
        stages={name: stage_from_mapping(name, settings or {}, base) for name, settings in ordered},
    )


def _stage_order(name: str) -> int:
    return AVAILABLE_STAGES.index(name) if name in AVAILABLE_STAGES else len(AVAILABLE_STAGES)


def stage_from_mapping(name: str, data: Mapping[str, Any], base: Path) -> StageSpec:
    """A stage's settings; keys that are not stage options become flat config overrides."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"stage {name!r} must be a mapping of settings")
    if "max_shard_retry" in data:
        raise ConfigError(
            f"stage {name!r}: max_shard_retry is the command line's shard retry; under Dagster the stage's "
            "max_retries (its RetryPolicy) retries a shard"
        )
    options = {key: value for key, value in data.items() if key in STAGE_OPTIONS}
    overrides = {key: value for key, value in data.items() if key not in STAGE_OPTIONS}
    kind = STAGE_KINDS.get(name)
    if kind is not None:  # the stage's own defaults; an unknown name fails in StageSpec
        defaults = {
            "config": kind.config,
            "encode_formats": dict(kind.encode_formats),
            "output_format": kind.output_format,
        }
        options = defaults | options
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
