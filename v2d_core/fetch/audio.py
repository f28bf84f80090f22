"""Extract the audio track of a downloaded video with one ffmpeg call."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from v2d_core.errors import FetchTimeoutError, NotMediaError
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.media_input import input_args

STDERR_TAIL_CHARS = 500


def extract_audio(video: Path, audio_format: str, workdir: Path, *, timeout: float) -> Path:
    """Write ``video``'s first audio track to ``workdir/<uuid>.<audio_format>`` and return that path.

    The track is copied as is (``-vn -c:a copy``); only when the container refuses
    that codec (say AAC into ``.mp3``) is it re-encoded with the container's default
    codec. The caller must know the video has an audio stream.
    """
    target = workdir / f"{uuid.uuid4().hex}.{audio_format}"
    error = _run_ffmpeg(video, target, ["-c:a", "copy"], timeout)
    if error is not None:
        error = _run_ffmpeg(video, target, [], timeout)
    if error is not None:
        target.unlink(missing_ok=True)
        raise NotMediaError(f"cannot extract the audio track as {audio_format}: {error}")
    return target


def _run_ffmpeg(source: Path, target: Path, codec_args: list[str], timeout: float) -> str | None:
    """Run ffmpeg once; return the tail of its stderr when it fails, else None."""
    command = [
        ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        *input_args(),
        "-i",
        str(source),
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
        *codec_args,
        str(target),
    ]
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        target.unlink(missing_ok=True)
        raise FetchTimeoutError(f"audio extraction took longer than {timeout:g}s") from None
    if done.returncode == 0 and target.exists() and target.stat().st_size > 0:
        return None
    stderr = done.stderr.decode("utf-8", "replace").strip()
    return stderr[-STDERR_TAIL_CHARS:] or f"ffmpeg exited with code {done.returncode}"
