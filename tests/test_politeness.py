"""Per-host politeness against loopback hosts that count concurrent requests and rate-limit with 429."""

from __future__ import annotations

import email.utils
import itertools
import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.helpers import status_rows, write_csv
from v2d_core import video2dataset
from v2d_core.config import Config, ReadingConfig, YtArgs
from v2d_core.errors import ConfigError, FetchError, FetchTimeoutError, HTTPStatusError, YtDlpError
from v2d_core.fetch import make_fetcher, politeness
from v2d_core.fetch.politeness import Limits, hold_off, host_key, polite, retry_after
from v2d_core.job import JobConfig
from v2d_core.sample import Sample
from v2d_core.shards.process import fetch_samples
from v2d_core.testing.server import MediaServer

VIDEO = {"video": "mp4"}


@pytest.fixture
def servers(media_dir: Path) -> Iterator[list[MediaServer]]:
    """Five more servers of the media folder: with two names each, ten hosts."""
    with ExitStack() as stack:
        yield [stack.enter_context(MediaServer(media_dir)) for _ in range(5)]


def host_names(server: MediaServer) -> list[str]:
    """Two hosts on one server: its address and the ``localhost`` name of the same port."""
    return [server.base_url, server.base_url.replace("127.0.0.1", "localhost")]


def test_per_host_connections_is_never_exceeded(tmp_path: Path, servers: list[MediaServer]) -> None:
    """Three hosts that answer 429 above two concurrent requests; eight fetch threads, limit 2;
    direct files and pages for yt-dlp whose video is on the same host."""
    tag = uuid.uuid4().hex
    hosts = host_names(servers[0]) + host_names(servers[1])[:1]
    urls = [f"{host}/limited/2/0.2/video_000{i % 4}.mp4?{tag}{i}" for i in range(6) for host in hosts]
    urls += [
        f"{host}/embedurl?src={quote(f'{host}/limited/2/0.2/video_0001.mp4?{tag}p{i}', safe='')}"
        for i in range(3)
        for host in hosts
    ]
    source = write_csv(tmp_path / "urls.csv", [{"url": url} for url in urls])
    video2dataset(
        url_list=str(source),
        input_format="csv",
        output_folder=str(tmp_path / "out"),
        config={"reading": {"per_host_connections": 2, "retries": 0}},
        processes_count=1,
        thread_count=8,
        number_sample_per_shard=len(urls),
        show_progress=False,
    )
    rows = status_rows(tmp_path / "out")
    assert [row["status"] for row in rows] == ["success"] * len(urls)
    assert servers[0].refused == servers[1].refused == 0
    for server in servers[:2]:
        assert all(count <= 2 for count in server.most_concurrent().values()), server.most_concurrent()


def test_rate_limited_rows_end_as_success_or_transient_failure(
    tmp_path: Path, servers: list[MediaServer]
) -> None:
    """v2d allowed more than the host takes: the host's 429s are retried or left transient."""
    tag = uuid.uuid4().hex
    urls = [f"{servers[2].base_url}/limited/1/0.2/video_0000.mp4?{tag}{i}" for i in range(12)]
    source = write_csv(tmp_path / "urls.csv", [{"url": url} for url in urls])
    video2dataset(
        url_list=str(source),
        input_format="csv",
        output_folder=str(tmp_path / "out"),
        config={"reading": {"per_host_connections": 6, "retries": 1}},
        processes_count=1,
        thread_count=6,
        number_sample_per_shard=len(urls),
        show_progress=False,
    )
    rows = status_rows(tmp_path / "out")
    assert len(rows) == len(urls)
    for row in rows:
        assert row["status"] == "success" or (row["error_transient"] and "HTTP 429" in row["error_message"])


def test_a_429_is_a_transient_row_that_retry_failed_fetches_again(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url = media_server.url("retryafter/1/1", f"video_0001.mp4?{uuid.uuid4().hex}")
    source = write_csv(tmp_path / "urls.csv", [{"url": url}])
    args = {
        "url_list": str(source),
        "input_format": "csv",
        "output_folder": str(tmp_path / "out"),
        "retries": 0,
        "processes_count": 1,
        "show_progress": False,
    }
    video2dataset(**args)
    [row] = status_rows(tmp_path / "out")
    assert (row["status"], row["error_transient"]) == ("failed_to_download", True)
    assert row["error_message"].startswith("HTTP 429")
    video2dataset(**args, incremental_mode="retry_failed")
    [row] = status_rows(tmp_path / "out")
    assert row["status"] == "success"
    assert media_server.hits(url) == 2


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
def test_retry_after_is_waited_before_the_next_attempt(
    servers: list[MediaServer], media_dir: Path, tmp_path: Path, as_date: bool
) -> None:
    media_server = servers[0]  # held off for seconds: not the session's shared server
    wall, clock = time.time(), time.monotonic()
    when = math.floor(wall) + 3  # an HTTP date has whole seconds
    value = email.utils.formatdate(when, usegmt=True) if as_date else "1"
    url = media_server.url(f"retryafter/1/{quote(value, safe='')}", f"video_0002.mp4?{uuid.uuid4().hex}")
    reading = ReadingConfig(retries=1, retry_backoff=0.01, timeout=5)
    result = make_fetcher(reading, VIDEO).fetch(url, tmp_path)
    assert result.streams["video"].read_bytes() == (media_dir / "video_0002.mp4").read_bytes()
    first, second = media_server.times(url)
    # Lower bounds only: a loaded machine can make the wait longer, never shorter.
    earliest = clock + (when - wall) if as_date else first + 1.0
    assert second >= earliest - 0.01


def test_a_429_that_ends_a_yt_dlp_fetch_holds_the_host_off_for_other_fetches(
    servers: list[MediaServer], tmp_path: Path
) -> None:
    media_server = servers[0]  # held off for a while: not the session's shared server
    tag = uuid.uuid4().hex
    refused = media_server.url("retryafter/99/2", f"video_0000.mp4?{tag}")
    fetcher = make_fetcher(ReadingConfig(retries=0, yt_args=YtArgs(retries=0)), VIDEO)
    with pytest.raises(YtDlpError, match="429") as caught:
        fetcher.fetch(media_server.embed_url(refused), tmp_path)
    assert caught.value.transient
    answered = media_server.times(refused)[-1]
    after = media_server.url("files", f"video_0001.mp4?{tag}")
    fetcher.fetch(after, tmp_path)
    # A lower bound only: the next request to that host waited for the two seconds asked.
    assert media_server.times(after)[0] >= answered + 2.0


def test_retry_after_past_the_deadline_fails_the_row_transiently(
    servers: list[MediaServer], tmp_path: Path
) -> None:
    """(A server of its own: this one is held off for an hour in this process.)"""
    url = servers[0].url("retryafter/5/3600", f"video_0002.mp4?{uuid.uuid4().hex}")
    reading = ReadingConfig(retries=3, fetch_deadline=30)
    with pytest.raises(FetchError) as caught:
        make_fetcher(reading, VIDEO).fetch(url, tmp_path)
    assert caught.value.transient
    assert servers[0].hits(url) == 1


def test_idle_hosts_are_forgotten_and_held_off_ones_remembered() -> None:
    """A process fetching from a million hosts keeps entries only for those in use or held off."""
    limits = Limits(connections=2)
    url = f"http://{uuid.uuid4().hex}.example:8080/video.mp4"
    with polite(url, limits, time.monotonic() + 5):
        assert (host_key(url), limits) in politeness._hosts
    assert (host_key(url), limits) not in politeness._hosts
    hold_off(url, limits, 3600)
    assert (host_key(url), limits) in politeness._hosts
    with (
        pytest.raises(FetchTimeoutError, match="past the fetch deadline"),
        polite(url, limits, time.monotonic() + 5),
    ):
        pass
    assert (host_key(url), limits) in politeness._hosts


def test_retry_after_header_values() -> None:
    assert retry_after("120") == 120.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after(email.utils.formatdate(0, usegmt=True)) == 0.0
    assert 50 < (retry_after(email.utils.formatdate(time.time() + 60, usegmt=True)) or 0) <= 60
    assert HTTPStatusError("HTTP 429", 429, 3.0).transient


@pytest.mark.parametrize(
    ("reading", "message"),
    [
        ({"per_host_connections": 0}, "per_host_connections"),
        ({"per_host_connections": 1.5}, "per_host_connections"),
        ({"per_host_rate": -1}, "per_host_rate"),
    ],
)
def test_bad_politeness_settings_are_config_errors(reading: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_mapping({"reading": reading})


def test_a_stalled_host_does_not_hold_the_threads_of_the_others(
    tmp_path: Path, media_dir: Path, servers: list[MediaServer]
) -> None:
    """Twelve rows of a host that answers nothing yet among forty rows of ten other hosts, eight
    threads: every row of the ten hosts is fetched while the stalled host's rows still wait."""
    stalled = MediaServer(media_dir).start()
    # a broken scheduler fails the test, never hangs it
    safety = threading.Timer(120, stalled.open_gate, args=("hold",))
    safety.start()
    try:
        hosts = [host for server in servers for host in host_names(server)]
        fast = [f"{hosts[i % 10]}/files/video_000{i % 4}.mp4?{i}" for i in range(40)]
        slow = [stalled.url("gate/hold", f"video_0000.mp4?{i}") for i in range(12)]
        waiting = iter(slow)
        urls = []
        for index, row in enumerate(fast):  # a stalled row after every third fast one, the rest at the end
            urls += [row, *itertools.islice(waiting, int(index % 3 == 0))]
        urls += list(waiting)
        samples = [Sample(key=str(index), url=url) for index, url in enumerate(urls)]
        config = Config.from_mapping(
            {"reading": {"per_host_connections": 2}, "distribution": {"thread_count": 8}}
        )
        job = JobConfig(url_list="unused", config=config)
        order = []
        for sample, fetched, _ in fetch_samples(samples, job, str(tmp_path), shard_id=0):
            assert not isinstance(fetched, BaseException), fetched
            order.append("slow" if "/gate/hold/" in (sample.url or "") else "fast")
            if order.count("fast") == len(fast):
                stalled.open_gate("hold")
        assert order == ["fast"] * len(fast) + ["slow"] * len(slow)
    finally:
        safety.cancel()
        stalled.stop()
