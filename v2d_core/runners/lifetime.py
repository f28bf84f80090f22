"""No process of a run outlives it.

A pool worker is forked by the forkserver, not by the run's main process, so the kernel tells
it nothing when the main process is killed (SIGKILL by the OOM killer or a scheduler). Each
worker therefore watches the main process: once it is gone, the worker kills the processes it
started (ffmpeg) and then itself. Commits are journaled (:mod:`v2d_core.shards.commit`), so a
shard abandoned this way is wholly old or new, and the next run clears its temporaries.
The main process ends its workers the same way, with SIGTERM, when it is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

WATCH_SECONDS = 0.2


def watch_main_process(main_pid: int) -> None:
    """End this process (and its children) once ``main_pid`` is gone, or at SIGTERM."""
    signal.signal(signal.SIGTERM, lambda signum, frame: _end_with_children())
    started = _start_time(main_pid)
    if started is None:  # already gone
        _end_with_children()
    watcher = threading.Thread(target=_watch, args=(main_pid, started), name="v2d-lifetime", daemon=True)
    watcher.start()


def _watch(main_pid: int, started: str | None) -> None:
    event = threading.Event()
    while not event.wait(WATCH_SECONDS):
        if _start_time(main_pid) != started:  # gone, or its pid reused by another process
            _end_with_children()


def _start_time(pid: int) -> str | None:
    """The start time the kernel records for ``pid`` (field 22 of its stat), None if it is gone;
    on systems without /proc, a constant while the process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _exists(pid)
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields[19]


def _exists(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "alive"


def _end_with_children() -> None:
    for child in _children(os.getpid()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.parent.name))
    return found
