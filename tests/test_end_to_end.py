"""The `video2dataset` command and function, end to end against videos served on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers import stats, status_rows, write_csv
from v2d_core import video2dataset
from v2d_core.errors import ConfigError, InputError
from v2d_core.testing.server import MediaServer

FAST = {"processes_count": 2, "thread_count": 4, "show_progress": False, "timeout": 2, "retry_backoff": 0.01}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2d_core.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cli_as_the_readme_shows_writes_files_parquet_and_stats(
    tmp_path: Path, media_server: MediaServer, media_dir: Path
) -> None:
    rows = [{"url": media_server.url("files", f"video_000{i}.mp4"), "caption": f"cap {i}"} for i in range(3)]
    url_list = write_csv(tmp_path / "videos.csv", rows)
    output = tmp_path / "dataset"
    done = run_cli(
        f"--url_list={url_list}",
        "--input_format=csv",
        "--url_col=url",
        "--caption_col=caption",
        f"--output_folder={output}",
        "--processes_count=1",
        "--thread_count=2",
    )
    assert done.returncode == 0, done.stderr
    assert "success: 3" in done.stdout
    shard = output / "00000"
    assert sorted(p.name for p in shard.iterdir()) == sorted(
        f"00000{i:03d}.{ext}" for i in range(3) for ext in ("mp4", "txt", "json")
    )
    assert (shard / "00000001.mp4").read_bytes() == (media_dir / "video_0001.mp4").read_bytes()
    assert (shard / "00000002.txt").read_text() == "cap 2"
    assert stats(output)["00000"]["successes"] == 3
    assert not (output / "_tmp").exists()


def test_every_row_is_accounted_for_with_a_reason(tmp_path: Path, media_server: MediaServer) -> None:
    good = media_server.url("files", "video_0000.mp4")
    bad = {
        "404": media_server.url("status/404", "x.mp4"),
        "500": media_server.url("status/500", "x.mp4"),
        "stall": media_server.url("stall", "video_0001.mp4"),
        "reset": media_server.url("reset", "video_0002.mp4"),
        "html": media_server.url("page", "x.mp4"),
        "truncated": media_server.url("truncated", "video_0003.mp4"),
        "empty": media_server.url("empty", "x.mp4"),
        "scheme": "ftp://127.0.0.1/x.mp4",
    }
    rows = [{"url": good, "caption": "good"}] + [{"url": url, "caption": name} for name, url in bad.items()]
    rows.append({"url": good, "caption": "good again"})
    output = tmp_path / "out"
    summary = video2dataset(
        url_list=str(write_csv(tmp_path / "in.csv", rows)),
        input_format="csv",
        caption_col="caption",
        output_folder=str(output),
        output_format="webdataset",
        **FAST,
    )
    assert summary.totals["count"] == len(rows)
    by_caption = {row["caption"]: row for row in status_rows(output)}
    assert len(by_caption) == len(rows)
    assert by_caption["good"]["status"] == by_caption["good again"]["status"] == "success"
    expected_words = {
        "404": "404",
        "500": "500",
        "stall": "timed out",
        "reset": "connection",
        "html": "",
        "truncated": "",
        "empty": "empty",
        "scheme": "ftp",
    }
    for name, word in expected_words.items():
        row = by_caption[name]
        assert row["status"] == "failed_to_download", name
        assert row["error_message"] and word in row["error_message"].lower(), (name, row["error_message"])
    with tarfile.open(output / "00000.tar") as tar:
        members = {name.split(".")[0] for name in tar.getnames()}
    assert members == {by_caption[c]["key"] for c in ("good", "good again")}
    shard_stats = stats(output)["00000"]
    assert (shard_stats["count"], shard_stats["successes"], shard_stats["failed_to_download"]) == (10, 2, 8)


def test_keys_and_shard_ids_follow_video2dataset(tmp_path: Path, media_server: MediaServer) -> None:
    urls = [media_server.url("files", f"video_000{i % 4}.mp4") for i in range(25)]
    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    output = tmp_path / "out"
    video2dataset(
        url_list=str(url_list),
        input_format="txt",
        output_folder=str(output),
        output_format="webdataset",
        number_sample_per_shard=10,
        **FAST,
    )
    assert sorted(stats(output)) == ["00000", "00001", "00002"]
    keys = sorted(row["key"] for row in status_rows(output))
    assert keys == sorted(
        f"{shard:05d}{row}" for shard in range(3) for row in range(10) if shard * 10 + row < 25
    )
    with tarfile.open(output / "00002.tar") as tar:
        assert sorted(tar.getnames()) == sorted(f"00002{r}.{e}" for r in range(5) for e in ("mp4", "json"))


def test_incremental_skips_done_shards_and_overwrite_redoes_them(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join(media_server.url("files", f"video_000{i}.mp4") for i in range(4)))
    output = tmp_path / "out"
    args = {
        "url_list": str(url_list),
        "input_format": "txt",
        "output_folder": str(output),
        "number_sample_per_shard": 2,
        **FAST,
    }
    video2dataset(**args)
    first = {name: s["start_time"] for name, s in stats(output).items()}
    again = video2dataset(**args)
    assert again.skipped_shards == [0, 1] and again.results == []
    assert {name: s["start_time"] for name, s in stats(output).items()} == first
    video2dataset(**args, incremental_mode="overwrite")
    assert all(s["start_time"] > first[name] for name, s in stats(output).items())


def test_bad_config_and_missing_column_are_clear_errors(tmp_path: Path, media_server: MediaServer) -> None:
    url_list = write_csv(tmp_path / "in.csv", [{"link": media_server.url("files", "video_0000.mp4")}])
    with pytest.raises(InputError, match="link"):
        video2dataset(url_list=str(url_list), input_format="csv", output_folder=str(tmp_path / "o"), **FAST)
    with pytest.raises(ConfigError, match="no_such_option"):
        video2dataset(url_list=str(url_list), output_folder=str(tmp_path / "o"), no_such_option=1)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("storage:\n  number_sample_per_shards: 10\n")
    done = run_cli(f"--url_list={url_list}", f"--output_folder={tmp_path / 'o'}", f"--config={bad_yaml}")
    assert done.returncode == 2
    assert "number_sample_per_shards" in done.stderr
