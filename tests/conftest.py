"""Shared fixtures: real videos made by ffmpeg and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from v2d_core.testing.media import make_video, make_videos
from v2d_core.testing.server import MediaServer

# Every test server listens on 127.0.0.1, which the address guard refuses by default; the
# guard's own tests turn it back on explicitly (allow_private_networks=False).
os.environ["V2D_ALLOW_PRIVATE_NETWORKS"] = "1"

# A suite started as a background job inherits SIGINT ignored, and so would every command it
# starts: Ctrl-C tests need the disposition a terminal gives (a Python handler here resets to
# the default in each child).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture(scope="module")
def long_media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    """Two 6-second videos (downsample_ml keeps clips of 4-10 s) served on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("long_media")
    make_videos(folder, 2, seconds=6.0)
    with MediaServer(folder) as server:
        yield server
