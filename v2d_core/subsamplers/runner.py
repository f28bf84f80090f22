"""Running ffmpeg with a time limit: one transcode, or a pipe of raw frames for analysis.

Every call takes a ``timeout``; a process past it is killed and
:class:`~v2d_core.errors.SubsampleTimeoutError` is raised. A non-zero exit raises
:class:`~v2d_core.errors.FFmpegError` carrying the tail of ffmpeg's stderr.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import ffmpeg
import numpy as np

from v2d_core.config import DEFAULT_MAX_PIXELS
from v2d_core.errors import FFmpegError, SubsampleTimeoutError
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.media_input import ffmpeg_input

STDERR_TAIL_CHARS = 600
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-y")
CHANNELS = {"gray": 1, "bgr24": 3, "rgb24": 3}


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


def read_frames(
    path: Path,
    *,
    width: int,
    height: int,
    pix_fmt: str = "bgr24",
    fps: float | None = None,
    timeout: float,
    what: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[np.ndarray]:
    """Decode ``path``'s first video stream once, resampled to ``fps`` (None: every decoded
    frame) and scaled to ``width`` x ``height``; yield each frame as a uint8 array.

    The whole iteration, consumer's time included, is limited to ``timeout`` seconds; frames
    over ``max_pixels`` are not decoded (ffmpeg fails).
    """
    # One decoder thread: frames this small are cheap to convert, and frame threads cost more CPU
    # than they save while the pool's other processes keep every core busy.
    stream = ffmpeg_input(path, max_pixels=max_pixels, threads=1).video
    if fps is not None:
        stream = stream.filter("fps", fps=fps)  # frames are dropped before any conversion
    stream = stream.filter("scale", width, height, flags="area")  # averaging, as OpenCV's INTER_AREA
    output = stream.output("pipe:", format="rawvideo", pix_fmt=pix_fmt, fps_mode="passthrough")
    frame_bytes = width * height * CHANNELS[pix_fmt]
    shape = (height, width) if CHANNELS[pix_fmt] == 1 else (height, width, CHANNELS[pix_fmt])
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command([output]), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
        )
        watchdog = _Watchdog(process, timeout)
        try:
            while len(chunk := process.stdout.read(frame_bytes)) == frame_bytes:  # type: ignore[union-attr]
                yield np.frombuffer(chunk, np.uint8).reshape(shape)
            returncode = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()  # type: ignore[union-attr]
        if watchdog.fired:
            raise SubsampleTimeoutError(f"{what} took longer than {timeout:g}s; ffmpeg was killed")
        if returncode != 0:
            stderr.seek(0)
            raise FFmpegError(f"{what} failed: {_tail(stderr.read(), returncode)}")


class _Watchdog:
    """Kills ``process`` once ``timeout`` seconds have passed, unless cancelled first."""

    def __init__(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        self.fired = False
        self._process = process
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        self._process.kill()

    def cancel(self) -> None:
        self._timer.cancel()
