"""Generate small real videos with ffmpeg's lavfi sources."""

from __future__ import annotations

import subprocess
from pathlib import Path

from v2d_core.ffmpeg_binary import ffmpeg_exe


def make_video(
    path: Path,
    *,
    seconds: float = 2.0,
    width: int = 160,
    height: int = 120,
    fps: int = 25,
    audio: bool = True,
    source: str = "testsrc2",
) -> Path:
    """Write an H.264/AAC mp4 of ``seconds`` from the lavfi ``source`` and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        ffmpeg_exe(),
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"{source}=size={width}x{height}:rate={fps}:duration={seconds}",
    ]
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", str(fps)]
    if audio:
        command += ["-c:a", "aac", "-b:a", "64k", "-shortest"]
    command += ["-movflags", "+faststart", str(path)]
    subprocess.run(command, check=True, timeout=120)
    return path


def make_videos(folder: Path, count: int, **options: object) -> list[Path]:
    """``count`` videos named ``video_0000.mp4``... in ``folder``; existing ones are kept."""
    paths = []
    for index in range(count):
        path = folder / f"video_{index:04d}.mp4"
        if not path.exists():
            make_video(path, **options)  # type: ignore[arg-type]
        paths.append(path)
    return paths
