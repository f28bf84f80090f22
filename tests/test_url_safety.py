"""URL safety: the address guard (SSRF), X-Robots-Tag opt-outs, and ffmpeg / PyAV never following
a playlist or concat list to other files. The guard is off for the rest of the suite
(tests/conftest.py); every test here turns it on explicitly."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import av
import pytest

from tests.helpers import stats, status_rows, write_csv
from v2d_core import video2dataset
from v2d_core.config import DEFAULT_MAX_PIXELS, ReadingConfig, YtArgs
from v2d_core.errors import (
    ConfigError,
    FetchError,
    OptOutError,
    RefusedUrlError,
    UnsupportedUrlError,
    V2DError,
)
from v2d_core.fetch import FetchResult, YtDlpFetcher, make_fetcher
from v2d_core.fetch.audio import extract_audio
from v2d_core.fetch.media_check import check_media
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.media_input import ffmpeg_input
from v2d_core.subsamplers import runner
from v2d_core.subsamplers.frames import read_frames
from v2d_core.subsamplers.media import media_info, probe
from v2d_core.testing.server import MediaServer

VIDEO = "video_0000.mp4"
GUARDED = {"allow_private_networks": False, "timeout": 2.0, "connect_timeout": 0.5, "retries": 0}
LOOPBACK_ALLOWED = {**GUARDED, "allowed_networks": ["127.0.0.1/32"]}  # the test server, nothing else


def fetch(url: str, workdir: Path, **reading: object) -> FetchResult:
    return make_fetcher(ReadingConfig(**{**GUARDED, **reading}), {"video": "mp4"}).fetch(url, workdir)  # type: ignore[arg-type]


def fetch_page(url: str, workdir: Path, **reading: object) -> FetchResult:
    return YtDlpFetcher(ReadingConfig(**{**GUARDED, **reading}), {"video": "mp4"}).fetch(url, workdir)  # type: ignore[arg-type]


def redirect(server: MediaServer, target: str) -> str:
    return server.url("redirect", quote(target, safe=""))


# --- the address guard -------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "2130706433", "127.1"])
def test_loopback_hosts_are_refused_after_dns_resolution(
    host: str, media_server: MediaServer, tmp_path: Path
) -> None:
    port = media_server.base_url.rsplit(":", 1)[1]
    url = f"http://{host}:{port}/files/{VIDEO}"
    with pytest.raises(RefusedUrlError, match=r"127\.0\.0\.1 is in 127\.0\.0\.0/8 \(loopback\)"):
        fetch(url, tmp_path)
    assert fetch(url, tmp_path, allow_private_networks=True).bytes_downloaded > 0  # the same url, guard off


@pytest.mark.parametrize(
    ("url", "range_"),
    [
        ("http://169.254.169.254/latest/meta-data/iam.mp4", "169.254.0.0/16 (link-local; cloud metadata)"),
        ("http://10.1.2.3/a.mp4", "10.0.0.0/8 (private)"),
        ("http://192.168.0.1/a.mp4", "192.168.0.0/16 (private)"),
        ("http://100.64.0.1/a.mp4", "100.64.0.0/10 (shared; carrier-grade NAT)"),
        ("http://0.0.0.0/a.mp4", "0.0.0.0/8 (this-network)"),
        ("http://[fd00::1]/a.mp4", "fc00::/7 (unique local; private)"),
        ("http://[::ffff:169.254.169.254]/a.mp4", "169.254.0.0/16"),
        ("https://[64:ff9b::a01:203]/a.mp4", "10.0.0.0/8 (private)"),
        # IPv6 forms that embed a forbidden IPv4 address: compatible, translated, local-use NAT64
        ("http://[::127.0.0.1]/a.mp4", "127.0.0.0/8 (loopback)"),
        ("http://[::ffff:0:10.0.0.1]/a.mp4", "10.0.0.0/8 (private)"),
        ("http://[64:ff9b:1::a9fe:a9fe]/a.mp4", "169.254.0.0/16 (link-local; cloud metadata)"),
        ("http://[64:ff9b:1:7f00:0:100::]/a.mp4", "127.0.0.0/8 (loopback)"),
        ("http://240.0.0.1/a.mp4", "240.0.0.0/4 (reserved)"),
    ],
)
def test_private_reserved_and_metadata_addresses_are_refused_before_connecting(
    url: str, range_: str, tmp_path: Path
) -> None:
    # Unguarded, these would be connection attempts (timing out after connect_timeout).
    with pytest.raises(RefusedUrlError, match=re.escape(range_)):
        fetch(url, tmp_path)


def test_redirects_to_private_addresses_are_refused_on_every_hop(
    media_server: MediaServer, tmp_path: Path
) -> None:
    port = media_server.base_url.rsplit(":", 1)[1]
    assert fetch(media_server.url("files", VIDEO), tmp_path, **LOOPBACK_ALLOWED).bytes_downloaded > 0
    with pytest.raises(RefusedUrlError, match=r"169\.254\.169\.254 is in 169\.254\.0\.0/16"):
        fetch(
            redirect(media_server, "http://169.254.169.254/latest/meta-data/x.mp4"),
            tmp_path,
            **LOOPBACK_ALLOWED,
        )
    two_hops = redirect(media_server, redirect(media_server, f"http://[::1]:{port}/files/{VIDEO}"))
    with pytest.raises(RefusedUrlError, match=r"::1 is in ::1/128 \(loopback\)"):
        fetch(two_hops, tmp_path, **LOOPBACK_ALLOWED)


def test_allowed_networks_let_a_chosen_network_through(media_server: MediaServer, tmp_path: Path) -> None:
    url = media_server.url("files", VIDEO)
    with pytest.raises(RefusedUrlError):
        fetch(url, tmp_path, allowed_networks=["10.0.0.0/8"])
    assert fetch(url, tmp_path, allowed_networks=["127.0.0.0/8"]).bytes_downloaded > 0
    with pytest.raises(ConfigError, match="not a network"):
        ReadingConfig(allowed_networks=["not-a-network"])


def test_ytdlp_pages_and_their_media_go_through_the_guard(media_server: MediaServer, tmp_path: Path) -> None:
    port = media_server.base_url.rsplit(":", 1)[1]
    with pytest.raises(RefusedUrlError, match="loopback"):  # the page itself
        fetch_page(f"http://localhost:{port}/embed/{VIDEO}", tmp_path)
    # an allowed page whose <video> redirects to the metadata address
    target = redirect(media_server, "http://169.254.169.254/latest/meta-data/x.mp4")
    page = media_server.embed_url(target)
    started = time.monotonic()
    with pytest.raises(RefusedUrlError, match=r"169\.254\.169\.254 is in 169\.254\.0\.0/16"):
        fetch_page(page, tmp_path, **LOOPBACK_ALLOWED)
    assert time.monotonic() - started < 30


def test_through_a_proxy_the_target_is_still_checked(media_server: MediaServer, tmp_path: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{unused.getsockname()[1]}"  # the user's proxy is trusted; nobody listens
    with pytest.raises(RefusedUrlError, match=r"127\.0\.0\.1 is in 127\.0\.0\.0/8 \(loopback\)"):
        fetch_page(media_server.embed_url(f"/files/{VIDEO}"), tmp_path, yt_args=YtArgs(proxy=proxy))


@pytest.fixture
def hls_folder(tmp_path: Path) -> Path:
    """A served folder: a real mpegts segment, and playlists naming it or private addresses."""
    folder = tmp_path / "served"
    folder.mkdir()
    make_segment(folder / "seg.ts")
    vod = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{segment}\n#EXT-X-ENDLIST\n"
    (folder / "metadata.m3u8").write_text(vod.format(segment="http://169.254.169.254/latest/seg.ts"))
    live = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.0,\nseg.ts\n"
    (folder / "live.m3u8").write_text(live)  # no end: a live stream
    return folder


def make_segment(path: Path) -> Path:
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi"]
    command += ["-i", "testsrc2=size=64x48:rate=10:duration=1", "-c:v", "libx264", "-f", "mpegts", str(path)]
    subprocess.run(command, check=True, timeout=60)
    return path


def test_hls_segments_and_program_downloads_go_through_the_guard(
    hls_folder: Path, media_server: MediaServer, tmp_path: Path
) -> None:
    with MediaServer(hls_folder) as server:
        with pytest.raises(RefusedUrlError, match=r"169\.254\.169\.254"):  # a segment on the metadata address
            fetch_page(server.url("files", "metadata.m3u8"), tmp_path, **LOOPBACK_ALLOWED)
        for guard in (
            LOOPBACK_ALLOWED,
            {"allow_private_networks": True},
        ):  # it never ends: refused either way
            with pytest.raises(UnsupportedUrlError, match="is a live stream"):
                fetch_page(server.url("files", "live.m3u8"), tmp_path, **guard)
    rtmp_page = media_server.embed_url("rtmp://127.0.0.1:1/live/stream.flv")
    with pytest.raises(RefusedUrlError, match="a program whose connections the address guard cannot check"):
        fetch_page(rtmp_page, tmp_path, **LOOPBACK_ALLOWED)


def test_a_refused_url_is_a_failed_row_that_says_why(media_server: MediaServer, tmp_path: Path) -> None:
    port = media_server.base_url.rsplit(":", 1)[1]
    urls = write_csv(
        tmp_path / "urls.csv",
        [
            {"url": f"http://127.0.0.2:{port}/files/{VIDEO}"},
            {"url": "http://169.254.169.254/latest/meta-data/a.mp4"},
            {"url": media_server.url("files", VIDEO)},
        ],
    )
    output = tmp_path / "out"
    video2dataset(
        url_list=str(urls),
        input_format="csv",
        output_folder=str(output),
        processes_count=1,
        thread_count=2,
        show_progress=False,
        allow_private_networks=False,
        allowed_networks=["127.0.0.1/32"],
        timeout=5,
    )
    rows = sorted(status_rows(output), key=lambda row: row["key"])
    assert [row["status"] for row in rows] == ["failed_to_download", "failed_to_download", "success"]
    assert "127.0.0.2 is in 127.0.0.0/8 (loopback)" in rows[0]["error_message"]
    assert "169.254.169.254 is in 169.254.0.0/16 (link-local; cloud metadata)" in rows[1]["error_message"]
    assert stats(output)["00000"]["failed_to_download"] == 2


# --- opt-out headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "directives", "refused"),
    [
        ("noai", None, True),
        ("noimageai, nofollow", None, True),
        ("noindex", None, True),
        ("otherbot: noai", None, False),  # addressed to another crawler
        ("nofollow", None, False),
        ("noai", [], False),  # the rule turned off
        ("noarchive", ["noarchive"], True),
    ],
)
def test_x_robots_tag_opt_outs_follow_img2dataset(
    header: str, directives: list[str] | None, refused: bool, media_server: MediaServer, tmp_path: Path
) -> None:
    url = media_server.url("robots", f"{quote(header, safe='')}/{VIDEO}")
    options = {} if directives is None else {"disallowed_header_directives": directives}
    if refused:
        with pytest.raises(OptOutError, match="X-Robots-Tag"):
            fetch(url, tmp_path, allow_private_networks=True, **options)
        assert not any(tmp_path.rglob("*.mp4"))
    else:
        assert fetch(url, tmp_path, allow_private_networks=True, **options).bytes_downloaded > 0


# --- ffmpeg and PyAV open local media only ---------------------------------------------------


@pytest.fixture
def secret_video(tmp_path: Path) -> Path:
    return make_segment(tmp_path / "secret.ts")


def hls_playlist(folder: Path, secret: Path) -> Path:
    path = folder / "playlist.m3u8"
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nfile://{secret}\n#EXT-X-ENDLIST\n")
    return path


def concat_list(folder: Path, secret: Path) -> Path:
    path = folder / "list.mp4"
    path.write_text(f"ffconcat version 1.0\nfile {secret.name}\n")
    return path


OPENERS: dict[str, Callable[[Path, Path], object]] = {
    "check_media": lambda path, _: check_media(path, DEFAULT_MAX_PIXELS),
    "media_info": lambda path, _: media_info(path),
    "probe": lambda path, _: probe(path, keyframes=True, timeout=30),
    "transcode": lambda path, out: runner.run(
        [ffmpeg_input(path).output(str(out / "o.mp4"))], timeout=30, what="t"
    ),
    "read_frames": lambda path, _: list(read_frames(path, width=16, height=12, timeout=30, what="t")),
    "extract_audio": lambda path, out: extract_audio(path, "m4a", out, timeout=30),
}


@pytest.mark.parametrize("make_list", [hls_playlist, concat_list], ids=["hls", "concat"])
def test_playlists_and_concat_lists_never_make_ffmpeg_read_other_files(
    make_list: Callable[[Path, Path], Path], secret_video: Path, tmp_path: Path
) -> None:
    listing = make_list(tmp_path, secret_video)
    with av.open(str(listing)) as container:  # without the whitelists, ffmpeg reads the secret file
        assert sum(1 for packet in container.demux() if packet.size) > 0
    for name, opener in OPENERS.items():
        with pytest.raises(V2DError):
            opener(listing, tmp_path)
        assert not (tmp_path / "o.mp4").exists(), name


def test_served_playlists_pointing_at_a_local_file_fail_and_copy_nothing(
    secret_video: Path, tmp_path: Path
) -> None:
    """End to end over 127.0.0.1, guard off: a vod and a live HLS playlist (yt-dlp's native
    downloader, then ffmpeg) and both lists disguised as .mp4 files (the direct fetcher)."""
    served = tmp_path / "served"
    served.mkdir()
    vod = hls_playlist(served, secret_video)
    (served / "live.m3u8").write_text(
        vod.read_text().replace("#EXT-X-ENDLIST\n", "").replace("#EXTINF", "#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF")
    )
    (served / "playlist.mp4").write_text(vod.read_text())
    concat_list(served, secret_video).rename(served / "concat.mp4")
    workdir = tmp_path / "work"
    workdir.mkdir()
    with MediaServer(served) as server:
        for name in ("playlist.m3u8", "live.m3u8", "playlist.mp4", "concat.mp4"):
            with pytest.raises(FetchError):
                fetch(server.url("files", name), workdir, allow_private_networks=True)
    assert list(workdir.iterdir()) == []
