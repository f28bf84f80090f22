"""``ReplaceGate``: when a shard's new version may replace the one already written ("never worse")."""

from __future__ import annotations

from dataclasses import dataclass

from v2d_core.errors import ConfigError, WorseShardError
from v2d_core.shards.stats import ShardStats


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplaceGate:
    """Refuses a new version whose success rate is below the old one's and either below
    ``min_success_rate`` or more than ``max_drop`` below the old one. ``force`` replaces anyway."""

    min_success_rate: float = 0.0
    max_drop: float | None = None
    force: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_success_rate <= 1.0:
            raise ConfigError(f"min_success_rate must be between 0 and 1, got {self.min_success_rate}")
        if self.max_drop is not None and not 0.0 <= self.max_drop <= 1.0:
            raise ConfigError(f"max_success_drop must be between 0 and 1, got {self.max_drop}")

    def check(self, shard: str, old: ShardStats, new: ShardStats) -> None:
        """Raise :class:`WorseShardError` if stats ``new`` may not replace stats ``old``."""
        old_rate, new_rate = old.success_rate, new.success_rate
        if self.force or new_rate >= old_rate:
            return
        if new_rate < self.min_success_rate:
            reason = f"below the floor min_success_rate {self.min_success_rate:.1%}"
        elif self.max_drop is not None and old_rate - new_rate > self.max_drop:
            reason = f"more than max_success_drop {self.max_drop:.1%} below it"
        else:
            return
        raise WorseShardError(
            f"shard {shard} kept: its new version's success rate {new_rate:.1%} "
            f"({new.successes}/{new.count}) is {reason}, and the shard it would replace "
            f"has {old_rate:.1%} ({old.successes}/{old.count}); rewrite it on purpose "
            "with force (or retry_failed)"
        )
