"""Running one ffmpeg process (a transcode) with a time limit.

Every call takes a ``timeout``; a process past it is killed and
:class:`~v2d_core.errors.SubsampleTimeoutError` is raised. A non-zero exit raises
:class:`~v2d_core.errors.FFmpegError` carrying the tail of ffmpeg's stderr.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import ffmpeg

from v2d_core.errors import FFmpegError, SubsampleTimeoutError
from v2d_core.ffmpeg_binary import ffmpeg_exe

STDERR_TAIL_CHARS = 600
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-y")


def command(outputs: Sequence[ffmpeg.nodes.OutputStream]) -> list[str]:
    """The argv of one ffmpeg process writing all ``outputs`` (global options first)."""
    spec = outputs[0] if len(outputs) == 1 else ffmpeg.merge_outputs(*outputs)
    return [ffmpeg_exe(), *GLOBAL_ARGS, *spec.get_args()]


def run(outputs: Sequence[ffmpeg.nodes.OutputStream], *, timeout: float, what: str) -> None:
    """Run one ffmpeg process for ``outputs``; kill it after ``timeout`` seconds."""
    argv = command(outputs)
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise SubsampleTimeoutError(f"{what} took longer than {timeout:g}s; ffmpeg was killed") from None
    if done.returncode != 0:
        raise FFmpegError(f"{what} failed: {_tail(done.stderr, done.returncode)}")


def _tail(stderr: bytes, returncode: int) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text[-STDERR_TAIL_CHARS:] or f"ffmpeg exited with code {returncode}"
