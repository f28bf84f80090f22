"""A shard's ``_stats.json`` as the materialization metadata the Dagster UI shows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import dagster as dg

from v2d_core.redact import redact_text

TOP_ERRORS = 5


def shard_metadata(stats: Mapping[str, Any], output_path: str) -> dict[str, Any]:
    """Samples, successes, failures by status, top error messages, bytes, seconds, videos/s, path
    (credentials in it masked)."""
    count = int(stats["count"])
    successes = int(stats["successes"])
    seconds = float(stats["duration"])
    errors = Counter({message: n for message, n in stats["status_dict"].items() if message != "success"})
    return {
        "dagster/row_count": dg.MetadataValue.int(count),
        "samples": dg.MetadataValue.int(count),
        "successes": dg.MetadataValue.int(successes),
        "success_rate": dg.MetadataValue.float(successes / count if count else 0.0),
        "failures_by_status": dg.MetadataValue.json(
            {
                "failed_to_download": int(stats["failed_to_download"]),
                "failed_to_subsample": int(stats["failed_to_subsample"]),
            }
        ),
        "top_errors": dg.MetadataValue.md(_error_table(errors)),
        "bytes": dg.MetadataValue.int(int(stats["bytes_downloaded"])),
        "seconds": dg.MetadataValue.float(round(seconds, 3)),
        "videos_per_second": dg.MetadataValue.float(round(successes / seconds, 3) if seconds > 0 else 0.0),
        "output_path": dg.MetadataValue.path(redact_text(output_path)),
    }


def _error_table(errors: Counter[str]) -> str:
    if not errors:
        return "no failures"
    lines = ["| samples | error |", "| ---: | --- |"]
    for message, count in errors.most_common(TOP_ERRORS):
        lines.append(f"| {count} | {message.replace('|', '/').replace(chr(10), ' ')[:300]} |")
    return "\n".join(lines)
