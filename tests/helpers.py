"""Small readers shared by the end-to-end tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` as a csv with a header."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


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
