"""yt-dlp is bounded like the direct fetcher: every byte it reads counts against the fetch's
deadline and size caps (a page, a media file, a subtitle file)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from v2d_core.config import ReadingConfig, YtArgs
from v2d_core.errors import FetchTimeoutError, TooLargeError
from v2d_core.fetch.ytdlp import YtDlpFetcher
from v2d_core.testing.server import MediaServer

SUBTITLES = YtArgs(yt_metadata_args={"writesubtitles": True, "subtitleslangs": ["en"]})


def fetcher(**reading: object) -> YtDlpFetcher:
    return YtDlpFetcher(ReadingConfig(allow_private_networks=True, **reading), {"video": "mp4"})  # type: ignore[arg-type]


def test_a_page_over_max_file_size_is_not_read_whole(tmp_path: Path, media_server: MediaServer) -> None:
    with pytest.raises(TooLargeError, match=r"bigpage/40 is over max_file_size \(1000000 bytes\)"):
        fetcher(max_file_size=1_000_000).fetch(media_server.url("bigpage", "40"), tmp_path)


def test_a_subtitle_file_over_max_subtitle_size_fails_the_row(
    tmp_path: Path, media_server: MediaServer
) -> None:
    bounded = fetcher(max_subtitle_size=2 * 1024**2, yt_args=SUBTITLES)
    small = bounded.fetch(media_server.url("subtitled/1", "video_0000.mp4"), tmp_path)
    assert small.metadata["yt_meta_dict"]["subtitles"]["en"]  # a 1 MiB file is read and parsed
    with pytest.raises(TooLargeError, match=r"vtt/41 is over max_subtitle_size \(2097152 bytes\)"):
        bounded.fetch(media_server.url("subtitled/41", "video_0000.mp4"), tmp_path)


def test_the_fetch_deadline_bounds_a_download_yt_dlp_would_retry(
    tmp_path: Path, media_server: MediaServer
) -> None:
    video = quote(media_server.url("slowheaders", "video_0000.mp4"), safe="")
    page = f"{media_server.base_url}/embedurl?src={video}"
    with pytest.raises(FetchTimeoutError, match=r"fetch_deadline"):
        fetcher(fetch_deadline=3, timeout=60).fetch(page, tmp_path)
