"""v2d: turn video url lists into sharded, training-ready video datasets."""

from v2d_core.api import video2dataset
from v2d_core.config import Config
from v2d_core.job import JobConfig
from v2d_core.run import RunSummary, run_job
from v2d_core.shard import ShardResult, process_shard
from v2d_core.sharding import ShardSpec

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
