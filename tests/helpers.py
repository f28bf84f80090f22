"""Small readers, servers and the command line, shared by the tests."""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq

from v2d_core.fetch import FetchResult


def video2dataset_cli(
    *flags: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The ``video2dataset`` command of this interpreter with ``flags``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "v2d_core.cli", *flags],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else dict(env),
    )


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


class QuietFiles(SimpleHTTPRequestHandler):
    """Serves a folder's files without logging each request."""

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler] | functools.partial) -> Iterator[str]:
    """``handler`` served on 127.0.0.1 from a thread; yields the server's base url."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def serving_folder(root: Path) -> Iterator[str]:
    """The files of ``root`` served on 127.0.0.1; yields the base url."""
    with serving(functools.partial(QuietFiles, directory=str(root))) as base:
        yield base
