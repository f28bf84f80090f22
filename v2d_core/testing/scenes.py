"""Small videos whose answers are known: lavfi scenes concatenated at known frames.

``make_scene_video(path, [("testsrc2", 2), ("color=c=red", 2), ("smptebars", 2)], fps=25)``
has cuts exactly at frames 50 and 100. A scene's source may carry a filter chain
after a comma: ``"smptebars,scroll=horizontal=0.02"`` is a pattern moving sideways.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from v2d_core.ffmpeg_binary import ffmpeg_exe


def _lavfi(scene: str, seconds: float, width: int, height: int, fps: int) -> str:
    source, _, chain = scene.partition(",")
    joiner = ":" if "=" in source else "="
    graph = f"{source}{joiner}size={width}x{height}:rate={fps}:duration={seconds}"
    return f"{graph},{chain}" if chain else graph


def make_scene_video(
    path: Path,
    scenes: Sequence[tuple[str, float]],
    *,
    width: int = 160,
    height: int = 120,
    fps: int = 25,
    gop: int | None = None,
    audio: bool = True,
) -> Path:
    """Write the ``scenes`` (lavfi source, seconds) back to back as an H.264 mp4 (AAC sine audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y"]
    for scene, seconds in scenes:
        command += ["-f", "lavfi", "-i", _lavfi(scene, seconds, width, height, fps)]
    total = sum(seconds for _, seconds in scenes)
    if audio:
        command += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={total}"]
    labels = "".join(f"[{index}:v]setsar=1,format=yuv420p[v{index}];" for index in range(len(scenes)))
    concat = "".join(f"[v{index}]" for index in range(len(scenes)))
    command += ["-filter_complex", f"{labels}{concat}concat=n={len(scenes)}:v=1:a=0[v]", "-map", "[v]"]
    if audio:
        command += ["-map", f"{len(scenes)}:a", "-c:a", "aac", "-b:a", "64k"]
    command += [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(gop or fps),
        "-sc_threshold",
        "0",
    ]
    command += ["-movflags", "+faststart", str(path)]
    subprocess.run(command, check=True, timeout=120, capture_output=True)
    return path
