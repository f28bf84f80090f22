"""``video2dataset(...)``: the Python entry point, with video2dataset 1.3.0's arguments."""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from v2d_core.config import Config
from v2d_core.errors import ConfigError
from v2d_core.job import JobConfig, options_from_kwargs
from v2d_core.runners.worker_pool import start_workers_early
from v2d_core.subsamplers.settings import SubsamplingConfig

if TYPE_CHECKING:
    from v2d_core.runners.run import RunSummary


def video2dataset(
    url_list: str | Sequence[str],
    output_folder: str = "dataset",
    output_format: str = "files",
    input_format: str = "csv",
    encode_formats: Mapping[str, str] | None = None,
    stage: str = "download",
    url_col: str = "url",
    caption_col: str | None = None,
    clip_col: str | None = None,
    save_additional_columns: Sequence[str] | str | None = None,
    enable_wandb: bool = False,
    wandb_project: str = "video2dataset",
    incremental_mode: str = "incremental",
    max_shard_retry: int = 1,
    tmp_dir: str = "/tmp",
    config: str | Mapping[str, Any] | Config = "default",
    show_progress: bool = True,
    **overrides: Any,
) -> RunSummary:
    """Download ``url_list`` into a sharded dataset under ``output_folder``.

    ``config`` is a preset name, a YAML path or a mapping in video2dataset's shape;
    any further keyword names one field of a config section and overrides it, e.g.
    ``processes_count=4`` or ``number_sample_per_shard=100``. ``enable_wandb`` logs the
    run's figures and errors to the Weights & Biases project ``wandb_project`` (extra ``wandb``).
    """
    if encode_formats is None and stage == "optical_flow":
        encode_formats = {}  # video2dataset's optical_flow stage writes flow and json only
    options = options_from_kwargs(
        {
            "url_list": _absolute(url_list),
            "output_folder": _absolute(output_folder),
            "output_format": output_format,
            "input_format": input_format,
            "encode_formats": encode_formats,
            "stage": stage,
            "url_col": url_col,
            "caption_col": caption_col,
            "clip_col": clip_col,
            "save_additional_columns": save_additional_columns,
            "incremental_mode": incremental_mode,
            "max_shard_retry": max_shard_retry,
            "tmp_dir": tmp_dir,
        }
    )
    job = JobConfig(config=load_config(config, overrides), **options)
    if job.config.distribution.distributor == "multiprocessing":
        start_workers_early()  # the workers' engine loads while this process loads the runner
    from v2d_core.runners.run import run_job

    if not enable_wandb:
        return run_job(job, show_progress=show_progress)
    from v2d_core.runners.wandb_logger import WandbLogger

    with WandbLogger(project=wandb_project, job=job) as logger:
        summary = run_job(job, show_progress=show_progress, observer=logger.log_live)
        logger.log_summary(summary)
    return summary


ARGUMENTS = tuple(
    name
    for name, parameter in inspect.signature(video2dataset).parameters.items()
    if parameter.kind is not parameter.VAR_KEYWORD
)
"""The named arguments of :func:`video2dataset` (every other flag is a config field)."""


def load_config(source: str | Mapping[str, Any] | Config, overrides: Mapping[str, Any]) -> Config:
    """The validated config of a run: ``source`` (preset, YAML path or mapping) with flat flag overrides.

    Every check a config gets happens here, before any work: the command, the function and
    the Dagster dataset files all build their configs with it.
    """
    return apply_overrides(Config.load(source), overrides)


def apply_overrides(config: Config, overrides: Mapping[str, Any]) -> Config:
    """``config`` with flat ``name=value`` overrides routed to the section that has ``name``.

    ``subsampling`` replaces the whole section with a mapping in the file's shape.
    """
    overrides = dict(overrides)
    if "subsampling" in overrides:
        config = dataclasses.replace(
            config, subsampling=SubsamplingConfig.from_mapping(overrides.pop("subsampling") or {})
        )
    sections: dict[str, dict[str, Any]] = {}
    owners = _flag_owners(config)
    for name, value in overrides.items():
        if name not in owners:
            raise ConfigError(
                f"unknown option {name!r}: not an argument of video2dataset nor a config field; "
                f"known: {', '.join(sorted([*ARGUMENTS, 'subsampling', *owners]))}"
            )
        sections.setdefault(owners[name], {})[name] = value
    return config.with_overrides(sections)


def _flag_owners(config: Config) -> dict[str, str]:
    """Each config field that a flag can set -> the section that owns it."""
    return {
        field.name: section
        for section in ("reading", "storage", "distribution")
        for field in dataclasses.fields(getattr(config, section))
    }


def _absolute(path: str | Sequence[str]) -> str | list[str]:
    if not isinstance(path, str):
        return [str(_absolute(p)) for p in path]
    import fsspec

    fs, stripped = fsspec.core.url_to_fs(path)
    if "file" in fs.protocol:
        return os.path.abspath(stripped)
    return path
