"""Dagster definitions for v2d: assets that call v2d_core, one partition per shard (being built)."""
