"""No process of a CLI run outlives it, and the run's copy of its input rows stays private.

The main process is killed as a scheduler or the OOM killer would kill it (SIGKILL, or SIGTERM
to it alone, not to its process group): its pool workers and their ffmpeg processes must end
too, and the run must resume to a whole dataset.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from tests.crash import (
    WAIT_SECONDS,
    check_dataset,
    check_finished_shards,
    group_processes,
    run_env,
    run_to_end,
    stalled_run,
    start,
    wait_for,
)
from v2d_core.testing.server import MediaServer


def wait_gone(group: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while left := group_processes(group):
        assert time.monotonic() < deadline, f"processes of the run outlived its main process: {left}"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killing_the_main_process_ends_every_process_of_the_run(
    tmp_path: Path, media_server: MediaServer, signum: signal.Signals
) -> None:
    command, output, keys = stalled_run(tmp_path, media_server)
    log = tmp_path / "log"
    stalled_before = media_server.started("delay")
    process = start(command, run_env(), log)
    try:
        wait_for(lambda: (output / "00000_stats.json").exists(), process, log)
        wait_for(lambda: media_server.started("delay") >= stalled_before + 2, process, log)
        inputs = output / "_tmp"
        # The run's copy of the rows (credentials whole) is its owner's alone, and goes with its shard.
        assert stat.S_IMODE(inputs.stat().st_mode) == 0o700
        wait_for(lambda: not (inputs / "00000.arrow").exists(), process, log)
        assert stat.S_IMODE((inputs / "00001.arrow").stat().st_mode) == 0o600
        assert len(group_processes(process.pid)) > 1  # the main process, the forkserver, its workers
        os.kill(process.pid, signum)  # the main process alone, as the OOM killer or a scheduler does
        code = process.wait(timeout=WAIT_SECONDS)
        wait_gone(process.pid)
    finally:
        if process.poll() is None or group_processes(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if signum == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM
        assert "run the same command to resume" in log.read_text()
    else:
        assert code == -signal.SIGKILL
    check_finished_shards(output, "webdataset")
    rows = check_dataset_after_resume(command, output, keys, media_server)
    assert {row["status"] for row in rows} == {"success", "failed_to_download"}


def check_dataset_after_resume(
    command: list[str], output: Path, keys: list[str], server: MediaServer
) -> list[dict]:
    """Resume with the stalling urls failing fast (a 1 s timeout), and check the whole dataset."""
    run_to_end([arg if not arg.startswith("--timeout=") else "--timeout=1" for arg in command], run_env())
    assert not (output / "_tmp").exists()
    return check_dataset(output, keys, "webdataset")
