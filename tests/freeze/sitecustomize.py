"""Imported at start-up by every Python process a crash test starts (the test puts this folder on
PYTHONPATH): the CLI, its forkserver and workers, ``dagster asset materialize`` and its step processes.

With ``V2D_TEST_FREEZE_AT_COMMIT_STEP=N`` a process stops itself (SIGSTOP) just before its N-th
step of committing a shard: renaming a temporary (``.{name}.tmp-<uuid>``) into place, or deleting
a commit journal (``.{shard}.commit``). The test sees the stopped process and SIGKILLs its whole
process group: a kill at an exact point of a real commit, with no test hook in the program.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def _commit_step(event: str, args: tuple[Any, ...]) -> bool:
    if event not in ("os.rename", "os.remove") or not isinstance(args[0], str | bytes | os.PathLike):
        return False
    name = os.path.basename(os.fsdecode(args[0]))
    return ".tmp-" in name if event == "os.rename" else name.endswith(".commit")


def _freeze_at(step: int) -> None:
    steps = 0

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal steps
        if _commit_step(event, args):
            steps += 1
            if steps == step:
                os.kill(os.getpid(), signal.SIGSTOP)

    sys.addaudithook(hook)


if os.environ.get("V2D_TEST_FREEZE_AT_COMMIT_STEP"):
    _freeze_at(int(os.environ["V2D_TEST_FREEZE_AT_COMMIT_STEP"]))
