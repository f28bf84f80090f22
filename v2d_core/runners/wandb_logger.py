"""Weights & Biases logging of a run (the optional ``wandb`` extra, imported only when asked for).

While the run goes, the live figures are logged each time a shard is committed; at the end,
the run's figures, shard counts and a table of its errors (message, rows, one failing row).
"""

from __future__ import annotations

import dataclasses
import json
from types import TracebackType
from typing import Any, Self

from v2d_core.errors import ConfigError
from v2d_core.job import JobConfig
from v2d_core.runners.figures import Figures
from v2d_core.runners.run import RunSummary
from v2d_core.runners.summary import ErrorRow, error_rows, run_figures, shard_counts

ERROR_TABLE_ROWS = 1000


def import_wandb() -> Any:
    """The ``wandb`` module, or a ConfigError that names the extra to install."""
    try:
        import wandb
    except ImportError as error:
        raise ConfigError(
            "enable_wandb needs Weights & Biases, which is not installed: pip install 'v2d[wandb]'"
        ) from error
    return wandb


class WandbLogger:
    """One W&B run for one ``video2dataset`` call; a context manager that finishes the run."""

    def __init__(self, project: str, job: JobConfig) -> None:
        self._wandb = import_wandb()
        self._run = self._wandb.init(project=project, job_type=job.stage, config=_json_config(job))

    def log_live(self, figures: Figures) -> None:
        """Log the figures so far (an observer of the run's progress)."""
        self._run.log(figures.metrics())

    def log_summary(self, summary: RunSummary) -> None:
        """Log the run's final figures, shard counts and error table; they are the W&B run's summary."""
        table = self._wandb.Table(
            columns=list(ErrorRow._fields), data=[list(row) for row in error_rows(summary, ERROR_TABLE_ROWS)]
        )
        self._run.log({**run_figures(summary).metrics(), **shard_counts(summary), "errors": table})

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._run.finish(exit_code=0 if exc_type is None else 1)


def _json_config(job: JobConfig) -> dict[str, Any]:
    """The job's options as plain JSON values (callables and paths become strings)."""
    loaded: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(job), default=str))
    return loaded
