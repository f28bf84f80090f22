"""Fetchers against a real HTTP server on 127.0.0.1: direct files, faults, audio, yt-dlp pages."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import av
import pytest

from tests.helpers import fetched_media, serving, serving_folder
from v2d_core.config import DEFAULT_MAX_PIXELS, ReadingConfig, YtArgs
from v2d_core.errors import (
    ConfigError,
    ConnectionLostError,
    FetchTimeoutError,
    HTTPStatusError,
    NotMediaError,
    TooLargeError,
    UnsupportedUrlError,
    YtDlpError,
)
from v2d_core.fetch import FetchResult, YtDlpFetcher, direct_media_extension, make_fetcher
from v2d_core.fetch import http as http_fetcher
from v2d_core.fetch.audio import extract_audio
from v2d_core.fetch.media_check import check_media
from v2d_core.fetch.ytdlp import parse_webvtt
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.testing.media import make_video
from v2d_core.testing.server import MediaServer

VIDEO = "video_0000.mp4"
VIDEO_AND_AUDIO = {"video": "mp4", "audio": "m4a"}


def fetch(
    url: str, workdir: Path, encode_formats: dict[str, str] | None = None, **reading: object
) -> FetchResult:
    """Fetch ``url`` with fast test defaults (1 s timeout, 2 retries, 10 ms backoff)."""
    options: dict[str, object] = {"timeout": 1.0, "retries": 2, "retry_backoff": 0.01, **reading}
    fetcher = make_fetcher(ReadingConfig(**options), encode_formats or {"video": "mp4"})  # type: ignore[arg-type]
    return fetcher.fetch(url, workdir)


def stream_types(path: Path) -> set[str]:
    with av.open(str(path)) as container:
        return {stream.type for stream in container.streams}


def leftovers(workdir: Path) -> list[Path]:
    return [path for path in workdir.rglob("*") if path.is_file()]


# --- direct files over HTTP ---------------------------------------------------------------


def test_direct_mp4_is_the_served_file(media_server: MediaServer, media_dir: Path, tmp_path: Path) -> None:
    """A plain mp4 stays in memory for the writer: written to disk once, in the shard."""
    result = fetch(media_server.url("files", VIDEO), tmp_path)
    assert (set(result.held), result.streams) == ({"video"}, {})
    assert result.held["video"] == (media_dir / VIDEO).read_bytes()
    assert result.bytes_downloaded == (media_dir / VIDEO).stat().st_size
    assert leftovers(tmp_path) == []


def test_direct_files_that_need_more_than_the_index_are_files(
    media_server: MediaServer, media_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an audio track to take out, or over the in-memory size: the body goes to a file."""
    both = fetch(media_server.url("files", VIDEO), tmp_path, VIDEO_AND_AUDIO)
    assert (set(both.streams), both.held) == ({"video", "audio"}, {})
    assert both.streams["video"].read_bytes() == (media_dir / VIDEO).read_bytes()
    monkeypatch.setattr(http_fetcher, "MEMORY_BODY_BYTES", 1000)  # the served video is 40 kB
    big = fetch(media_server.url("files", VIDEO), tmp_path)
    assert (set(big.streams), big.held) == ({"video"}, {})
    assert big.streams["video"].read_bytes() == (media_dir / VIDEO).read_bytes()


def test_flaky_server_succeeds_after_retries(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    result = fetch(media_server.url("flaky/2", "video_0001.mp4"), tmp_path, retries=3)
    assert fetched_media(result, "video") == (media_dir / "video_0001.mp4").read_bytes()


def test_not_found_fails_fast_without_retries(media_server: MediaServer, tmp_path: Path) -> None:
    url = media_server.url("status/404", VIDEO)
    started = time.monotonic()
    with pytest.raises(HTTPStatusError, match="404") as caught:
        fetch(url, tmp_path, retries=3, retry_backoff=5.0)
    assert time.monotonic() - started < 2.0  # a single retry would have slept 5 s
    assert caught.value.status_code == 404
    assert str(caught.value) == f"HTTP 404 Not Found for {url}"
    assert leftovers(tmp_path) == []


def test_server_error_fails_after_retries(media_server: MediaServer, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(HTTPStatusError, match="HTTP 500") as caught:
        fetch(media_server.url("status/500", VIDEO), tmp_path, retries=2, retry_backoff=0.2)
    assert time.monotonic() - started >= 0.2 + 0.4  # two backoffs: 0.2 s then 0.4 s
    assert caught.value.status_code == 500


def test_stalled_body_times_out(media_server: MediaServer, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(FetchTimeoutError):
        fetch(media_server.url("stall", VIDEO), tmp_path, timeout=0.5, retries=1)
    assert time.monotonic() - started < 5.0
    assert leftovers(tmp_path) == []


def test_connection_reset_is_connection_lost(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(ConnectionLostError):
        fetch(media_server.url("reset", VIDEO), tmp_path, retries=1)
    assert leftovers(tmp_path) == []


def test_truncated_mp4_is_not_media(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(NotMediaError, match="truncated or corrupt media"):
        fetch(media_server.url("truncated", VIDEO), tmp_path)
    assert leftovers(tmp_path) == []


MP4_LAYOUTS = {
    "index first": (),  # what make_video writes (+faststart)
    "index last": ("-movflags", "-faststart"),
}


def remux(source: Path, target: Path, *flags: str) -> Path:
    """``source`` stream-copied into ``target`` with muxer ``flags``."""
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(source), "-c", "copy", *flags]
    subprocess.run([*command, str(target)], check=True, timeout=60)
    return target


@pytest.mark.parametrize("layout", MP4_LAYOUTS)
@pytest.mark.parametrize("kept", [0.4, 0.9, 0.995])
def test_mp4_cut_anywhere_is_caught(tmp_path: Path, kept: float, layout: str) -> None:
    """The mp4's index is read, not its packets: a cut at any point must still be caught."""
    made = make_video(tmp_path / "made.mp4", seconds=3.0)
    whole = remux(made, tmp_path / "whole.mp4", *MP4_LAYOUTS[layout])
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * kept)])
    info = check_media(whole, DEFAULT_MAX_PIXELS)
    assert (info.has_video, info.has_audio) == (True, True)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    with pytest.raises(NotMediaError, match=r"truncated or corrupt media|not readable|no video or audio"):
        check_media(cut, DEFAULT_MAX_PIXELS)


def test_fragmented_mp4_is_checked_the_thorough_way(tmp_path: Path) -> None:
    """An mp4 without a sample index (fragments) is demuxed instead, and accepted whole."""
    made = make_video(tmp_path / "made.mp4", seconds=2.0)
    fragmented = remux(made, tmp_path / "fragmented.mp4", "-movflags", "frag_keyframe+empty_moov")
    info = check_media(fragmented, DEFAULT_MAX_PIXELS)
    assert (info.has_video, info.has_audio) == (True, True)


def test_unindexed_and_audio_only_media_are_accepted(tmp_path: Path) -> None:
    """Containers without a packet index (webm) take the full demux; audio-only files pass too."""
    webm = tmp_path / "clip.webm"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=1",
            "-c:v",
            "libvpx",
            "-b:v",
            "100k",
            str(webm),
        ],
        check=True,
        timeout=60,
    )
    webm_info = check_media(webm, DEFAULT_MAX_PIXELS)
    assert (webm_info.has_video, webm_info.has_audio) == (True, False)
    audio = make_video(tmp_path / "tone.mp4", seconds=1.0)
    m4a = extract_audio(audio, "m4a", tmp_path, timeout=60)
    m4a_info = check_media(m4a, DEFAULT_MAX_PIXELS)
    assert (m4a_info.has_video, m4a_info.has_audio) == (False, True)


def test_empty_body_is_not_media(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(NotMediaError, match="empty"):
        fetch(media_server.url("empty", VIDEO), tmp_path)


def test_html_page_at_mp4_url_is_not_media(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(NotMediaError, match="web page"):
        fetch(media_server.url("page", VIDEO), tmp_path)


def test_file_over_max_size_is_too_large(media_server: MediaServer, tmp_path: Path) -> None:
    with pytest.raises(TooLargeError, match="max_file_size"):
        fetch(media_server.url("files", VIDEO), tmp_path, max_file_size=1000)
    assert leftovers(tmp_path) == []


class _TrickleHandler(BaseHTTPRequestHandler):
    """Declares a large body, then sends one byte every 0.1 s: each read is quick, the body never ends."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(600):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass


@pytest.fixture
def trickle_url() -> Iterator[str]:
    with serving(_TrickleHandler) as base:
        yield f"{base}/slow.mp4"


def test_trickling_body_hits_the_overall_deadline(trickle_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(FetchTimeoutError, match="not complete after 2s"):
        fetch(trickle_url, tmp_path, timeout=0.5, retries=0)  # deadline: 4 x 0.5 s
    assert time.monotonic() - started < 4.0


def test_concurrent_fetches_from_many_threads(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    fetcher = make_fetcher(ReadingConfig(timeout=2.0), {"video": "mp4"})
    names = [f"video_{index % 4:04d}.mp4" for index in range(16)]
    folders = [tmp_path / str(index) for index in range(16)]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fetcher.fetch, [media_server.url("files", n) for n in names], folders))
    for name, result in zip(names, results, strict=True):
        assert fetched_media(result, "video") == (media_dir / name).read_bytes()


# --- routing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/a.mp4", "file:///etc/passwd", "not a url", "", None, "data:video/mp4;base64,AAAA"],
)
def test_unsupported_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedUrlError):
        fetch(url, tmp_path)


@pytest.mark.parametrize(
    ("url", "extension"),
    [
        ("https://cdn.example/v/clip.mp4", "mp4"),
        ("https://cdn.example/v/clip.MKV?sig=abc&exp=1", "mkv"),
        ("https://cdn.example/sound.m4a#t=3", "m4a"),
        ("https://www.youtube.com/watch?v=abc", None),
        ("https://example.com/watch?file=clip.mp4", None),
        ("https://example.com/clip.mp4/", None),
        ("https://example.com/clip.gif", None),
    ],
)
def test_direct_media_extension_reads_the_path_only(url: str, extension: str | None) -> None:
    assert direct_media_extension(url) == extension


def test_encode_formats_without_video_or_audio_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        make_fetcher(ReadingConfig(), {"flow": "npy"})


# --- audio ----------------------------------------------------------------------------------


def test_audio_is_extracted_from_a_direct_video(media_server: MediaServer, tmp_path: Path) -> None:
    result = fetch(media_server.url("files", VIDEO), tmp_path, encode_formats=VIDEO_AND_AUDIO)
    assert set(result.streams) == {"video", "audio"}
    audio = result.streams["audio"]
    assert audio.suffix == ".m4a"
    assert stream_types(audio) == {"audio"}


def test_audio_only_request_keeps_no_video(media_server: MediaServer, tmp_path: Path) -> None:
    result = fetch(media_server.url("files", VIDEO), tmp_path, encode_formats={"audio": "m4a"})
    assert set(result.streams) == {"audio"}
    assert leftovers(tmp_path) == [result.streams["audio"]]


def test_silent_video_has_no_audio_stream(media_server: MediaServer, tmp_path: Path) -> None:
    result = fetch(media_server.url("files", "silent.mp4"), tmp_path, encode_formats=VIDEO_AND_AUDIO)
    assert set(result.streams) == {"video"}


def test_silent_video_when_only_audio_is_asked_is_not_media(
    media_server: MediaServer, tmp_path: Path
) -> None:
    with pytest.raises(NotMediaError, match="no audio stream"):
        fetch(media_server.url("files", "silent.mp4"), tmp_path, encode_formats={"audio": "m4a"})
    assert leftovers(tmp_path) == []


def test_audio_is_re_encoded_when_the_container_refuses_a_copy(
    media_server: MediaServer, tmp_path: Path
) -> None:
    result = fetch(media_server.url("files", VIDEO), tmp_path, encode_formats={"audio": "wav"})
    assert result.streams["audio"].suffix == ".wav"
    assert stream_types(result.streams["audio"]) == {"audio"}


# --- yt-dlp ---------------------------------------------------------------------------------


def ytdlp(encode_formats: dict[str, str], **yt_args: object) -> YtDlpFetcher:
    reading = ReadingConfig(timeout=2.0, retries=0, retry_backoff=0.01, yt_args=YtArgs(**yt_args))  # type: ignore[arg-type]
    return YtDlpFetcher(reading, encode_formats)


def test_ytdlp_downloads_the_video_of_an_embed_page(
    media_server: MediaServer, media_dir: Path, tmp_path: Path
) -> None:
    fetcher = ytdlp(VIDEO_AND_AUDIO, yt_metadata_args={"get_info": True})
    result = fetcher.fetch(media_server.url("embed", VIDEO), tmp_path)
    assert result.streams["video"].read_bytes() == (media_dir / VIDEO).read_bytes()
    assert stream_types(result.streams["audio"]) == {"audio"}
    assert all(tmp_path in path.parents for path in result.streams.values())
    meta = result.metadata["yt_meta_dict"]
    assert meta["subtitles"] is None
    assert "Embedded video" in meta["info"]["title"]
    assert not {"formats", "thumbnails", "http_headers", "requested_downloads"} & set(meta["info"])
    json.dumps(result.metadata)


def test_ytdlp_without_metadata_args_gives_no_metadata(media_server: MediaServer, tmp_path: Path) -> None:
    result = ytdlp({"video": "mp4"}).fetch(media_server.url("embed", "silent.mp4"), tmp_path)
    assert set(result.streams) == {"video"}
    assert result.metadata == {}


def test_ytdlp_error_keeps_its_message(media_server: MediaServer, tmp_path: Path) -> None:
    fetcher = make_fetcher(ReadingConfig(timeout=2.0, retries=0), {"video": "mp4"})
    with pytest.raises(YtDlpError) as caught:
        fetcher.fetch(media_server.url("status/404", "page"), tmp_path)  # no media extension -> yt-dlp
    message = str(caught.value)
    assert message.startswith("ERROR: [generic]")
    assert "HTTP Error 404" in message
    assert "\x1b[" not in message
    assert leftovers(tmp_path) == []


@pytest.fixture
def subtitled_page(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A page with a <video> and an English WebVTT <track>, served by the standard library."""
    root = tmp_path_factory.mktemp("site")
    shutil.copy(media_dir / VIDEO, root / "clip.mp4")
    (root / "clip.en.vtt").write_text(
        "WEBVTT\n\n1\n00:00.000 --> 00:00.500\nHello\n\n"
        "00:00:00.500 --> 00:00:01.000 align:start\nHello\nworld\n"
    )
    (root / "watch.html").write_text(
        "<html><head><title>Subtitled clip</title></head><body><video controls>"
        '<source src="clip.mp4" type="video/mp4">'
        '<track kind="subtitles" src="clip.en.vtt" srclang="en"></video></body></html>'
    )
    with serving_folder(root) as base:
        yield f"{base}/watch.html"


def test_ytdlp_subtitles_are_fetched_and_parsed(subtitled_page: str, tmp_path: Path) -> None:
    metadata_args = {"writesubtitles": True, "subtitleslangs": ["en"], "get_info": True}
    result = ytdlp({"video": "mp4"}, yt_metadata_args=metadata_args).fetch(subtitled_page, tmp_path)
    meta = result.metadata["yt_meta_dict"]
    assert meta["subtitles"] == {
        "en": [
            {"start": "00:00:00.000", "end": "00:00:00.500", "lines": ["Hello"]},
            {"start": "00:00:00.500", "end": "00:00:01.000", "lines": ["world"]},
        ]
    }
    assert meta["info"]["title"].startswith("Subtitled clip")
    assert not [path for path in tmp_path.rglob("*.vtt")]  # parsed in memory, never written


def test_ytdl_options_may_not_move_files_out_of_the_workdir() -> None:
    with pytest.raises(ConfigError, match="outtmpl"):
        ytdlp({"video": "mp4"}, ytdl_options={"outtmpl": "/tmp/%(id)s.%(ext)s"})


def test_parse_webvtt_drops_word_timed_and_repeated_lines() -> None:
    text = (
        "\ufeffWEBVTT\r\nKind: captions\r\n\r\nNOTE a comment\r\n\r\n"
        "00:01.000 --> 00:02.000\r\nfirst line\r\n\r\n"
        "00:02.000 --> 00:03.000\r\nfirst<00:02.500><c> line</c>\r\n\r\n"
        "00:03.000 --> 00:04.000\r\nfirst line\r\nsecond line\r\n\r\n"
        "1:00:04.000 --> 1:00:05.250\r\n\r\n"
    )
    assert parse_webvtt(text) == [
        {"start": "00:00:01.000", "end": "00:00:02.000", "lines": ["first line"]},
        {"start": "00:00:03.000", "end": "00:00:04.000", "lines": ["second line"]},
    ]


def test_ytdlp_never_writes_back_to_the_shared_cookie_file(media_server: MediaServer, tmp_path: Path) -> None:
    cookies = tmp_path / "cookies.txt"
    original = "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc\n"
    cookies.write_text(original)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = ytdlp({"video": "mp4"}, cookiefile=str(cookies)).fetch(media_server.url("embed", VIDEO), workdir)
    assert set(result.streams) == {"video"}
    assert cookies.read_text() == original


def test_ytdlp_download_over_max_size_is_too_large(media_server: MediaServer, tmp_path: Path) -> None:
    fetcher = YtDlpFetcher(ReadingConfig(timeout=2.0, retries=0, max_file_size=1000), {"video": "mp4"})
    with pytest.raises(TooLargeError, match="max_file_size"):
        fetcher.fetch(media_server.url("embed", VIDEO), tmp_path)
    assert leftovers(tmp_path) == []
