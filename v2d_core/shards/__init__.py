"""The one owner of a written shard: its stats record, file names, read-back and verification."""

from v2d_core.shards.layout import ShardLayout, done_shards
from v2d_core.shards.stats import ShardStats

__all__ = ["ShardLayout", "ShardStats", "done_shards"]
