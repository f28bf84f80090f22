"""Shared fixtures: real videos made by ffmpeg and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from v2d_core.testing.media import make_video, make_videos
from v2d_core.testing.server import MediaServer


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 1-second 160x120 H.264/AAC videos plus one without audio (``silent.mp4``)."""
    folder = tmp_path_factory.mktemp("media")
    make_videos(folder, 4, seconds=1.0)
    make_video(folder / "silent.mp4", seconds=1.0, audio=False)
    return folder


@pytest.fixture(scope="session")
def media_server(media_dir: Path) -> Iterator[MediaServer]:
    """The media folder served on 127.0.0.1 with fault routes (see v2d_core.testing.server)."""
    with MediaServer(media_dir) as server:
        yield server
