"""A shard's stats as the materialization metadata the Dagster UI shows."""

from __future__ import annotations

from typing import Any

import dagster as dg

from v2d_core.config import ReadingConfig
from v2d_core.doctor import environment_facts, fact_lines
from v2d_core.redact import redact_text
from v2d_core.runners.figures import Figures
from v2d_core.shards import ShardStats


def shard_metadata(stats: ShardStats, output_path: str) -> dict[str, Any]:
    """Samples, successes, failures by status, top error messages, bytes, seconds, videos/s, path."""
    figures = Figures.from_stats(stats)
    return {
        "dagster/row_count": dg.MetadataValue.int(figures.samples),
        "samples": dg.MetadataValue.int(figures.samples),
        "successes": dg.MetadataValue.int(figures.successes),
        "success_rate": dg.MetadataValue.float(figures.success_rate),
        "failures_by_status": dg.MetadataValue.json(figures.failures_by_status),
        "top_errors": dg.MetadataValue.md(_error_table(figures.top_errors())),
        "bytes": dg.MetadataValue.int(figures.bytes),
        "seconds": dg.MetadataValue.float(round(figures.seconds, 3)),
        "videos_per_second": dg.MetadataValue.float(round(figures.videos_per_second, 3)),
        "output_path": dg.MetadataValue.path(redact_text(output_path)),
    }


def _error_table(errors: list[tuple[str, int]]) -> str:
    if not errors:
        return "no failures"
    lines = ["| samples | error |", "| ---: | --- |"]
    for message, count in errors:
        lines.append(f"| {count} | {message.replace('|', '/').replace(chr(10), ' ')[:300]} |")
    return "\n".join(lines)


def environment_metadata(context: dg.AssetExecutionContext, reading: ReadingConfig) -> dg.MetadataValue:
    """v2d-doctor's facts for this run: logged in the run's log, returned as json metadata.

    A run without a usable ffmpeg fails here, before any shard starts.
    """
    facts = environment_facts(reading)
    for line in fact_lines(facts):
        context.log.info(line)
    for warning in facts["warnings"]:
        context.log.warning(warning)
    if "error" in facts["ffmpeg"]:
        raise dg.Failure(description=facts["ffmpeg"]["error"], allow_retries=False)
    return dg.MetadataValue.json(facts)
