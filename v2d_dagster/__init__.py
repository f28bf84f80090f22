"""Dagster definitions for v2d: each dataset file an asset graph, each shard a partition, each stage
an asset calling v2d_core (``factory``), with per-shard checks and automation (``automation``)."""
