"""Cut detection gives ContentDetector's own answers, flashes and merges included."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.subsamplers.cut_detection import analysis_frames, detect_cuts, scenes
from v2d_core.subsamplers.settings import CutDetectionArgs
from v2d_core.testing.scenes import make_scene_video

FPS = 25
# scenes of 5 to 50 frames: many cuts closer together than min_scene_len, so the FlashFilter merges
FLASHES = [
    ("testsrc2", 2.0),
    ("smptebars", 0.2),
    ("testsrc2", 0.32),
    ("rgbtestsrc", 1.0),
    ("color=c=red", 0.4),
    ("smptebars,scroll=horizontal=0.03", 1.2),
    ("color=c=blue", 0.24),
    ("testsrc", 0.8),
]


@pytest.fixture(scope="module")
def flashes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene_video(tmp_path_factory.mktemp("cuts") / "flashes.mp4", FLASHES, fps=FPS, audio=False)


def scenedetect_scenes(
    frames: list[np.ndarray], threshold: float, min_scene_len: int, stride: int
) -> list[list[int]]:
    """scenedetect's ContentDetector fed every ``stride``-th frame, one at a time."""
    from scenedetect import ContentDetector
    from scenedetect.common import FrameTimecode

    detector, cuts = ContentDetector(threshold=threshold, min_scene_len=min_scene_len), []
    for index in range(0, len(frames), stride):
        cuts += [
            cut.frame_num for cut in detector.process_frame(FrameTimecode(index, float(FPS)), frames[index])
        ]
    return scenes(cuts, len(frames), "all")


@pytest.mark.parametrize("min_scene_len", [0, 8, 15, 30])
@pytest.mark.parametrize("threshold", [12.0, 27.0])
def test_cuts_are_content_detectors_at_every_rate(
    flashes: Path, threshold: float, min_scene_len: int
) -> None:
    frames = list(analysis_frames(flashes, timeout=60))
    assert len(frames) == round(sum(seconds for _, seconds in FLASHES) * FPS)
    found = detect_cuts(
        flashes, CutDetectionArgs(threshold=threshold, min_scene_len=min_scene_len, framerates=(5,))
    )
    assert found["cuts_original_fps"] == scenedetect_scenes(frames, threshold, min_scene_len, 1)
    assert found["cuts_5"] == scenedetect_scenes(frames, threshold, min_scene_len, 5)


def test_short_flashes_are_merged_into_their_neighbours(flashes: Path) -> None:
    found = detect_cuts(flashes, CutDetectionArgs(threshold=27.0, min_scene_len=15))
    starts = [start for start, _ in found["cuts_original_fps"]]
    assert starts[:2] == [0, 50]  # the 5-frame bars and the 8-frame pattern after them are one scene
    assert all(end - start >= 15 for start, end in found["cuts_original_fps"][:-1])


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p", "yuvj420p"])
def test_cuts_of_any_pixel_format_and_odd_downscale(tmp_path: Path, pix_fmt: str) -> None:
    """224 pixels wide is analysed at a third of its size (chroma read off the 2:1 grid); frames
    not in limited-range 4:2:0 are converted before sampling: the cuts are the same exact frames."""
    source = make_scene_video(
        tmp_path / "scenes.mp4",
        [("testsrc2", 2.0), ("smptebars", 2.0), ("rgbtestsrc", 2.0)],
        width=224,
        height=126,
    )
    video = tmp_path / f"{pix_fmt}.mp4"
    argv = [
        ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(source),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
    ]
    subprocess.run([*argv, "-pix_fmt", pix_fmt, "-an", str(video)], check=True, timeout=60)
    assert next(analysis_frames(video, timeout=60)).shape == (42, 74, 3)
    assert detect_cuts(video, CutDetectionArgs())["cuts_original_fps"] == [[0, 50], [50, 100], [100, 150]]
