"""One run at a time per output folder.

Two runs writing one folder race on the same shards. A run holds an exclusive ``flock`` on
``{output_folder}/.v2d.lock`` for its whole life; the kernel drops it when the holder dies, so
a killed run never blocks the next. The file names its holder (host, pid, start time) for the
error a second run prints. Object stores have no such lock: there, one run per folder is the
user's to keep (Dagster's per-partition runs are one per shard).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from v2d_core.errors import OutputError
from v2d_core.storage import fresh_fs

LOCK_NAME = ".v2d.lock"


@contextlib.contextmanager
def output_lock(output_folder: str) -> Iterator[None]:
    """Hold the output folder's lock while the block runs; OutputError naming the holder if taken."""
    fs, root = fresh_fs(output_folder)
    if "file" not in fs.protocol:
        yield
        return
    folder = Path(root)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output_folder {output_folder} is a file, not a folder")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    with _locked(path, output_folder) as handle:
        handle.seek(0)
        handle.truncate()
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%FT%T%z")}
        handle.write(json.dumps(holder))
        handle.flush()
        try:
            yield
        except BaseException:
            path.unlink(missing_ok=True)
            if created:  # a run that failed before writing anything leaves no empty folder behind
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
        path.unlink(missing_ok=True)  # while still held, so no run locks the file being removed


@contextlib.contextmanager
def _locked(path: Path, output_folder: str) -> Iterator[IO[str]]:
    """``path`` opened and flocked; a file its holder removed meanwhile is opened again."""
    while True:
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise OutputError(
                    f"another run is writing {output_folder} (held by {holder}); "
                    "wait for it to end, or choose another output_folder"
                ) from None
            if path.exists() and path.stat().st_ino == os.fstat(handle.fileno()).st_ino:
                yield handle
                return
