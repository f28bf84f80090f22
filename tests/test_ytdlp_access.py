"""What a YouTube user sets to get through: proxies, cookies, extractor arguments, yt-dlp plugins.

All offline: a forwarding proxy, a cookie-guarded route and a plugin site on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from tests.helpers import stats, status_rows, write_csv
from tests.proxy_server import ForwardingProxy
from v2d_core import video2dataset
from v2d_core.config import Config, ReadingConfig, YtArgs
from v2d_core.errors import ConfigError, YtDlpError
from v2d_core.fetch import make_fetcher
from v2d_core.testing.server import MediaServer

REPO = Path(__file__).resolve().parents[1]
VIDEO = {"video": "mp4"}

PLUGIN = '''
import json
import os
import socket

from yt_dlp.extractor.common import InfoExtractor


class LoopSiteIE(InfoExtractor):
    """A site on 127.0.0.1 whose page names no video: only this extractor knows where it is."""

    _VALID_URL = r"http://(?P<host>127\\.0\\.0\\.1:\\d+)/loopsite/(?P<id>[\\w-]+)"

    def _real_extract(self, url):
        host, video_id = self._match_valid_url(url).group("host", "id")
        self._download_webpage(f"http://{host}/page/{video_id}", video_id)
        clip = self._configuration_arg("clip", ["video_0000"])[0]
        settings = {key: self._downloader.params.get(key) for key in ("sleep_interval_requests",)}
        return {
            "id": video_id,
            "title": "a loop site video",
            "url": f"http://{host}/files/{clip}.mp4",
            "ext": "mp4",
            "description": json.dumps(settings),
        }
'''


def write_plugin(root: Path) -> Path:
    """A yt-dlp plugin package (``yt_dlp_plugins.extractor`` namespace package) under ``root``."""
    folder = root / "yt_dlp_plugins" / "extractor"
    folder.mkdir(parents=True)
    (folder / "loopsite.py").write_text(textwrap.dedent(PLUGIN))
    return root


def test_plugins_on_the_python_path_serve_their_sites_with_the_extractor_args(
    tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    plugins = write_plugin(tmp_path / "plugins")
    url = f"{media_server.base_url}/loopsite/clip-{uuid.uuid4().hex[:8]}"
    with pytest.raises(YtDlpError, match="404"):  # this process has no such plugin: a plain 404 page
        make_fetcher(ReadingConfig(), VIDEO).fetch(url, tmp_path)

    (tmp_path / "urls.txt").write_text(f"{url}\n")
    config = {
        "reading": {
            "per_host_rate": 20,
            "yt_args": {
                "extractor_args": {"LoopSite": {"clip": "video_0003"}},
                "yt_metadata_args": {"get_info": True},
            },
        },
        "distribution": {"processes_count": 1, "thread_count": 2},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    command = [
        sys.executable,
        "-m",
        "v2d_core.cli",
        f"--url_list={tmp_path / 'urls.txt'}",
        "--input_format=txt",
        f"--output_folder={tmp_path / 'out'}",
        f"--config={tmp_path / 'config.json'}",
    ]
    env = {**os.environ, "PYTHONPATH": f"{plugins}:{REPO}"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = status_rows(tmp_path / "out")
    assert row["status"] == "success", row["error_message"]
    shard = tmp_path / "out" / "00000"
    assert (shard / f"{row['key']}.mp4").read_bytes() == (media_dir / "video_0003.mp4").read_bytes()
    info = json.loads((shard / f"{row['key']}.json").read_text())["yt_meta_dict"]["info"]
    assert info["extractor_key"] == "LoopSite"
    assert json.loads(info["description"]) == {"sleep_interval_requests": 0.05}


def test_proxies_rotate_per_shard_for_files_and_pages(
    tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    tag = uuid.uuid4().hex
    direct = [media_server.url("files", f"video_000{i}.mp4?{tag}") for i in range(2)]
    pages = [
        media_server.embed_url(media_server.url("files", f"video_000{i + 2}.mp4?{tag}")) for i in range(2)
    ]
    source = write_csv(
        tmp_path / "urls.csv", [{"url": url} for pair in zip(direct, pages, strict=True) for url in pair]
    )
    with ForwardingProxy() as first, ForwardingProxy(credentials=("proxyuser", "proxy-secret-1")) as second:
        video2dataset(
            url_list=str(source),
            input_format="csv",
            output_folder=str(tmp_path / "out"),
            config={"reading": {"yt_args": {"proxy": [first.url, second.url]}}},
            number_sample_per_shard=2,
            processes_count=1,
            show_progress=False,
        )
        through = {"first": first.urls(), "second": second.urls()}
    assert [row["status"] for row in status_rows(tmp_path / "out")] == ["success"] * 4
    # shard 0 (a direct file and a page) through the first proxy, shard 1 through the second
    for name, index in (("first", 0), ("second", 1)):
        assert direct[index] in through[name]
        assert pages[index] in through[name]
        played = media_server.url("files", f"video_000{index + 2}.mp4?{tag}")
        assert played in through[name]  # the page's video, fetched by yt-dlp
    assert not set(through["first"]) & set(through["second"])
    shard_stats = stats(tmp_path / "out")
    assert shard_stats["00000"]["proxy_failures"] == {first.url: 0}
    assert shard_stats["00001"]["proxy_failures"] == {
        second.url.replace("proxyuser:proxy-secret-1", "***"): 0
    }


def test_a_dead_proxy_counts_its_failures_without_showing_its_password(
    tmp_path: Path, media_server: MediaServer
) -> None:
    tag = uuid.uuid4().hex
    with ForwardingProxy() as alive:
        with socket.socket() as unused:  # a port bound once and closed: connections to it are refused
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        dead_url = f"http://proxyuser:dead-proxy-secret@127.0.0.1:{port}"
        urls = [media_server.url("files", f"video_0000.mp4?{tag}{i}") for i in range(2)]
        urls += [
            media_server.embed_url(media_server.url("files", f"video_0001.mp4?{tag}{i}")) for i in range(2)
        ]
        source = write_csv(tmp_path / "urls.csv", [{"url": url} for url in urls])
        video2dataset(
            url_list=str(source),
            input_format="csv",
            output_folder=str(tmp_path / "out"),
            config={"reading": {"retries": 0, "yt_args": {"proxy": [dead_url, alive.url], "retries": 0}}},
            number_sample_per_shard=1,
            processes_count=1,
            show_progress=False,
        )
    rows = status_rows(tmp_path / "out")
    assert [row["status"] for row in rows] == ["failed_to_download", "success"] * 2
    shard_stats = stats(tmp_path / "out")
    masked = f"http://***@127.0.0.1:{port}"
    assert [shard_stats[name]["proxy_failures"] for name in sorted(shard_stats)] == [
        {masked: 1},
        {alive.url: 0},
        {masked: 1},
        {alive.url: 0},
    ]
    written = "".join(
        path.read_text(errors="replace") for path in (tmp_path / "out").rglob("*") if path.is_file()
    )
    assert "dead-proxy-secret" not in written


def firefox_profile(folder: Path, host: str, name: str, value: str) -> Path:
    """A Firefox profile folder whose cookie database holds one cookie (Firefox stores them unencrypted)."""
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / "cookies.sqlite") as db:
        db.execute(
            "CREATE TABLE moz_cookies (id INTEGER PRIMARY KEY, originAttributes TEXT NOT NULL DEFAULT '', "
            "name TEXT, value TEXT, host TEXT, path TEXT, expiry INTEGER, lastAccessed INTEGER, "
            "creationTime INTEGER, isSecure INTEGER, isHttpOnly INTEGER)"
        )
        db.execute(
            "INSERT INTO moz_cookies (name, value, host, path, expiry, isSecure, isHttpOnly) "
            "VALUES (?, ?, ?, '/', ?, 0, 0)",
            (name, value, host, int(time.time()) + 3600),
        )
    return folder


def test_cookies_from_browser_reach_the_site(tmp_path: Path, media_server: MediaServer) -> None:
    profile = firefox_profile(tmp_path / "firefox", "127.0.0.1", "SID", "signed-in-session-42")
    guarded = media_server.url(f"needcookie/{quote('SID=signed-in-session-42', safe='')}", "video_0001.mp4")
    page = media_server.embed_url(f"{guarded}?{uuid.uuid4().hex}")
    with pytest.raises(YtDlpError, match="403"):
        make_fetcher(ReadingConfig(), VIDEO).fetch(page, tmp_path)
    reading = ReadingConfig(yt_args=YtArgs(cookies_from_browser=f"firefox:{profile}"))
    result = make_fetcher(reading, VIDEO).fetch(page, tmp_path)
    assert result.streams["video"].stat().st_size > 0


@pytest.mark.parametrize("spec", ["netscape", "chrome+NOKEYRING", ""])
def test_an_unknown_browser_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="cookies_from_browser"):
        make_fetcher(ReadingConfig(yt_args=YtArgs(cookies_from_browser=spec)), VIDEO)


def test_extractor_args_and_proxies_are_checked_when_read() -> None:
    args = YtArgs(
        extractor_args={"YouTube": {"player_client": ["mweb", "web"], "po_token": "mweb.gvs+TOKEN"}}
    )
    assert args.extractor_args == {
        "youtube": {"player_client": ["mweb", "web"], "po_token": ["mweb.gvs+TOKEN"]}
    }
    assert YtArgs(proxy=["http://a:1", "http://b:2"]).proxy_for_shard(3) == "http://b:2"
    assert YtArgs(proxy="http://a:1").proxy_for_shard(3) == "http://a:1"
    with pytest.raises(ConfigError, match="proxy"):
        YtArgs(proxy=[])
    with pytest.raises(ConfigError, match="extractor_args"):
        YtArgs(extractor_args={"youtube": ["player_client=mweb"]})


def test_the_readme_youtube_recipe_is_a_valid_config() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## YouTube\n", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = Config.from_mapping(yaml.safe_load(block))
    yt_args = config.reading.yt_args
    assert yt_args.proxy_for_shard(1) == "http://USER:PASSWORD@proxy-b.example:3128"
    assert yt_args.extractor_args["youtube"]["player_client"] == ["mweb"]
    assert config.reading.per_host_rate == 1
    make_fetcher(config.reading, VIDEO)  # the browser name and proxies are accepted
