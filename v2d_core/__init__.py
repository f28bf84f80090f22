"""v2d: turn video url lists into sharded, training-ready video datasets.

The names below are imported on first use, so ``import v2d_core.x`` (the CLI, a worker)
loads only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from v2d_core.api import video2dataset
    from v2d_core.config import Config
    from v2d_core.inputs.sharding import ShardSpec
    from v2d_core.job import JobConfig
    from v2d_core.runners.run import RunSummary, run_job
    from v2d_core.shards.process import process_shard
    from v2d_core.shards.result import ShardResult

_HOMES = {
    "Config": "v2d_core.config",
    "JobConfig": "v2d_core.job",
    "RunSummary": "v2d_core.runners.run",
    "ShardResult": "v2d_core.shards.result",
    "ShardSpec": "v2d_core.inputs.sharding",
    "process_shard": "v2d_core.shards.process",
    "run_job": "v2d_core.runners.run",
    "video2dataset": "v2d_core.api",
}

__all__ = [
    "Config",
    "JobConfig",
    "RunSummary",
    "ShardResult",
    "ShardSpec",
    "process_shard",
    "run_job",
    "video2dataset",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'v2d_core' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
