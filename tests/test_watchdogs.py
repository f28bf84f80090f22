"""Watchdogs: every fetch, yt-dlp call, ffmpeg process and analysis step ends within its limit,
as a failed row saying why, and the shard still finishes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import stats, status_rows, write_csv
from v2d_core import video2dataset
from v2d_core.config import DEFAULT_MAX_PIXELS, ReadingConfig
from v2d_core.errors import FetchTimeoutError, FFmpegError, SubsampleTimeoutError, TooLongError, V2DError
from v2d_core.fetch import Fetcher, YtDlpFetcher, make_fetcher
from v2d_core.fetch.audio import extract_audio
from v2d_core.fetch.media_check import check_media
from v2d_core.media_input import ffmpeg_input
from v2d_core.subsamplers import runner
from v2d_core.subsamplers.frames import read_frames
from v2d_core.testing.server import MediaServer

VIDEO = "video_0000.mp4"


def rows_by_key(output: Path) -> list[dict]:
    return sorted(status_rows(output), key=lambda row: row["key"])


def test_trickling_servers_end_as_failed_rows_at_the_fetch_deadline(
    media_server: MediaServer, tmp_path: Path
) -> None:
    """One byte a second: in the body, in the headers, and under yt-dlp; each read is quick
    (under ``timeout``), only the wall-clock deadline can end them."""
    trickle_page = media_server.embed_url("/trickle/" + VIDEO)
    urls = write_csv(
        tmp_path / "urls.csv",
        [
            {"url": media_server.url("trickle", VIDEO)},
            {"url": media_server.url("slowheaders", VIDEO)},
            {"url": trickle_page},
            {"url": media_server.url("files", VIDEO)},
        ],
    )
    output = tmp_path / "out"
    started = time.monotonic()
    video2dataset(
        url_list=str(urls),
        input_format="csv",
        output_folder=str(output),
        processes_count=1,
        thread_count=4,
        show_progress=False,
        timeout=3,
        retries=0,
        fetch_deadline=4,
    )
    assert time.monotonic() - started < 60
    rows = rows_by_key(output)
    assert [row["status"] for row in rows] == ["failed_to_download"] * 3 + ["success"]
    assert "not complete after 4s" in rows[0]["error_message"]
    assert "not complete after 4s" in rows[1]["error_message"]
    assert "yt-dlp did not finish" in rows[2]["error_message"]
    assert "within fetch_deadline (4s)" in rows[2]["error_message"]
    assert stats(output)["00000"]["count"] == 4


@pytest.mark.parametrize(
    ("subsampling", "message"),
    [
        (
            {"ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale", "timeout": 0.001}}},
            "transcoding",
        ),
        ({"CutDetectionSubsampler": {"args": {"timeout": 0.001}}}, "cut detection"),
        ({"FFProbeSubsampler": {"args": {"extract_keyframes": True, "timeout": 1e-9}}}, "reading keyframes"),
    ],
    ids=["ffmpeg", "cut_detection", "probe"],
)
def test_a_transform_over_its_limit_is_a_failed_row(
    subsampling: dict, message: str, media_server: MediaServer, tmp_path: Path
) -> None:
    urls = write_csv(
        tmp_path / "urls.csv", [{"url": media_server.url("files", f"video_000{i}.mp4")} for i in (0, 1)]
    )
    output = tmp_path / "out"
    video2dataset(
        url_list=str(urls),
        input_format="csv",
        output_folder=str(output),
        processes_count=1,
        thread_count=2,
        show_progress=False,
        config={"subsampling": subsampling},
    )
    rows = rows_by_key(output)
    assert [row["status"] for row in rows] == ["failed_to_subsample"] * 2
    assert all(message in row["error_message"] and "took longer than" in row["error_message"] for row in rows)
    assert stats(output)["00000"]["failed_to_subsample"] == 2


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe nobody writes to: ffmpeg opening it waits forever."""
    path = tmp_path / "never.mp4"
    os.mkfifo(path)
    yield path
    path.unlink()


def ffmpeg_processes_reading(path: Path) -> list[int]:
    """Pids of running processes whose command line names ``path``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(path).encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


HUNG: dict[str, Callable[[Path, Path], object]] = {
    "transcode": lambda path, out: runner.run(
        [ffmpeg_input(path).output(str(out / "o.mp4"))], timeout=1, what="transcoding"
    ),
    "extract_audio": lambda path, out: extract_audio(path, "m4a", out, timeout=1),
}


@pytest.mark.parametrize("call", HUNG.values(), ids=HUNG.keys())
def test_a_hung_ffmpeg_is_killed_at_its_timeout(
    call: Callable[[Path, Path], object], fifo: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises((SubsampleTimeoutError, FetchTimeoutError), match="longer than 1s"):
        call(fifo, tmp_path)
    assert time.monotonic() - started < 15
    assert ffmpeg_processes_reading(fifo) == []


def test_the_analysis_decode_refuses_a_named_pipe_instead_of_blocking(fifo: Path) -> None:
    with pytest.raises(FFmpegError, match="not a regular file"):
        list(read_frames(fifo, width=16, height=12, timeout=1, what="reading"))


def test_checking_a_download_has_a_time_limit(media_dir: Path) -> None:
    assert check_media(media_dir / VIDEO, DEFAULT_MAX_PIXELS, timeout=30).has_video
    with pytest.raises(FetchTimeoutError, match="checking the downloaded media took longer than"):
        check_media(media_dir / VIDEO, DEFAULT_MAX_PIXELS, timeout=1e-9)


@pytest.mark.parametrize("route", ["files", "embed"])
def test_media_longer_than_max_duration_fails_to_download(
    route: str, media_server: MediaServer, tmp_path: Path
) -> None:
    url = media_server.url(route, VIDEO)  # 1 s long

    def fetcher(max_duration: float) -> Fetcher:
        reading = ReadingConfig(timeout=5, retries=0, max_duration=max_duration)
        return (
            YtDlpFetcher(reading, {"video": "mp4"})
            if route == "embed"
            else make_fetcher(reading, {"video": "mp4"})
        )

    with pytest.raises(TooLongError, match=r"media lasts 1\.0s, over max_duration \(0\.5s\)"):
        fetcher(0.5).fetch(url, tmp_path)
    assert list(tmp_path.rglob("*.mp4")) == []
    fetched = fetcher(2).fetch(url, tmp_path)
    assert fetched.streams or fetched.held


def test_yt_dlp_refuses_an_announced_long_video_before_downloading_it(
    media_server: MediaServer, tmp_path: Path
) -> None:
    page = media_server.url("jsonld", "600/" + VIDEO)  # announces 10 minutes
    fetcher = YtDlpFetcher(ReadingConfig(timeout=5, retries=0, max_duration=60), {"video": "mp4"})
    with pytest.raises(TooLongError, match=r"video lasts 600s, over max_duration \(60s\)"):
        fetcher.fetch(page, tmp_path)
    assert list(tmp_path.rglob("*.mp4")) == []


def test_limits_are_validated() -> None:
    for bad in ({"fetch_deadline": 0}, {"max_duration": -1}, {"allow_private_networks": "yes"}):
        with pytest.raises(V2DError):
            ReadingConfig(**bad)  # type: ignore[arg-type]
