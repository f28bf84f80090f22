"""Small readers shared by the end-to-end tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq

from v2d_core.fetch import FetchResult


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` as a csv with a header."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def fetched_media(result: FetchResult, modality: str) -> bytes:
    """The bytes a fetch gave for ``modality``: held in memory, or in its file."""
    if modality in result.held:
        return result.held[modality]
    return result.streams[modality].read_bytes()


def status_rows(output: Path) -> list[dict]:
    """Every row of every shard's status parquet, in shard order."""
    rows: list[dict] = []
    for path in sorted(output.glob("[0-9]*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def stats(output: Path) -> dict[str, dict]:
    """Shard name -> its ``_stats.json``."""
    return {
        p.name.removesuffix("_stats.json"): json.loads(p.read_text()) for p in output.glob("*_stats.json")
    }
