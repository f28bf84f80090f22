"""``incremental_mode="retry_failed"``: transient failures of finished shards are fetched again, in place."""

from __future__ import annotations

import json
import tarfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml

from tests.crash import check_dataset, cli_command, frozen, kill_when, run_env, start
from tests.helpers import stats, write_csv
from v2d_core import video2dataset
from v2d_core.errors import ConfigError
from v2d_core.testing.server import BASIC_AUTH, SIGNATURE, MediaServer
from v2d_dagster.factory import build_definitions

FAST = {"processes_count": 2, "thread_count": 2, "show_progress": False, "timeout": 2, "retries": 0}


def member_bytes(output: Path, name: str, output_format: str) -> dict[str, bytes]:
    """Every data file of a shard by name: tar members or the files of its folder."""
    if output_format == "files":
        return {p.name: p.read_bytes() for p in sorted((output / name).iterdir())}
    with tarfile.open(output / f"{name}.tar") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def rows_by_caption(output: Path) -> dict[str, dict[str, Any]]:
    rows = [row for path in sorted(output.glob("[0-9]*.parquet")) for row in pq.read_table(path).to_pylist()]
    return {row["caption"]: row for row in rows}


def url_list(tmp_path: Path, server: MediaServer) -> tuple[Path, dict[str, str]]:
    """Three shards of 3: shard 0 and 1 have transient failures, shard 2 only a permanent one."""
    tag = uuid.uuid4().hex  # the server counts requests per path and query: fresh urls per test
    urls = {
        "good0": server.url("files", f"video_0000.mp4?{tag}"),
        "flaky": server.url("flaky/1", f"video_0001.mp4?{tag}"),
        "gone": server.url("status/404", f"gone.mp4?{tag}"),
        "reset": server.url("reset", f"video_0002.mp4?{tag}"),
        "busy": server.url("flaky/1", f"video_0003.mp4?{tag}"),
        "page": server.url("page", f"x.mp4?{tag}"),
        "good1": server.url("files", f"video_0002.mp4?{tag}"),
        "good2": server.url("files", f"video_0003.mp4?{tag}"),
        "gone2": server.url("status/404", f"gone2.mp4?{tag}"),
    }
    rows = [{"url": url, "caption": caption} for caption, url in urls.items()]
    return write_csv(tmp_path / "videos.csv", rows), urls


@pytest.mark.parametrize("output_format", ["webdataset", "files"])
def test_retry_failed_fetches_only_transient_failures_and_keeps_the_rest(
    tmp_path: Path, media_server: MediaServer, media_dir: Path, output_format: str
) -> None:
    source, urls = url_list(tmp_path, media_server)
    output = tmp_path / "out"
    args = {
        "url_list": str(source),
        "input_format": "csv",
        "caption_col": "caption",
        "output_folder": str(output),
        "output_format": output_format,
        "number_sample_per_shard": 3,
        **FAST,
    }
    video2dataset(**args)
    before = rows_by_caption(output)
    assert {c: (r["status"], r["error_transient"]) for c, r in before.items()} == {
        "good0": ("success", None),
        "flaky": ("failed_to_download", True),  # 503
        "gone": ("failed_to_download", False),  # 404
        "reset": ("failed_to_download", True),  # connection reset mid-body
        "busy": ("failed_to_download", True),
        "page": ("failed_to_download", False),  # not media
        "good1": ("success", None),
        "good2": ("success", None),
        "gone2": ("failed_to_download", False),
    }
    old_stats = stats(output)
    old_members = {name: member_bytes(output, name, output_format) for name in ("00000", "00001")}
    untouched = {p.name: p.stat().st_mtime_ns for p in output.glob("00002*")}

    summary = video2dataset(**args, incremental_mode="retry_failed")

    assert summary.skipped_shards == [2]
    assert sorted(result.shard_id for result in summary.results) == [0, 1]
    after = rows_by_caption(output)
    assert {c: r["key"] for c, r in after.items()} == {c: r["key"] for c, r in before.items()}
    assert (after["flaky"]["status"], after["busy"]["status"]) == ("success", "success")
    assert (after["reset"]["status"], after["reset"]["error_transient"]) == ("failed_to_download", True)
    for caption in ("good0", "gone", "page", "good1", "good2", "gone2"):
        assert after[caption] == before[caption], caption
    for caption, url in urls.items():  # permanent failures and successes are not fetched again
        assert media_server.hits(url) == (2 if caption in ("flaky", "busy", "reset") else 1), caption
    for name, old in old_members.items():  # successful samples kept byte for byte, new ones added
        new = member_bytes(output, name, output_format)
        assert {member: new[member] for member in old} == old
    flaky_key = after["flaky"]["key"]
    assert (
        member_bytes(output, "00000", output_format)[f"{flaky_key}.mp4"]
        == (media_dir / "video_0001.mp4").read_bytes()
    )
    assert {p.name: p.stat().st_mtime_ns for p in output.glob("00002*")} == untouched
    new_stats = stats(output)
    assert new_stats["00002"] == old_stats["00002"]
    for name in ("00000", "00001"):
        assert new_stats[name]["count"] == old_stats[name]["count"] == 3
        assert new_stats[name]["successes"] == old_stats[name]["successes"] + 1
        assert new_stats[name]["failed_to_download"] == old_stats[name]["failed_to_download"] - 1
        assert sum(new_stats[name]["status_dict"].values()) == 3
    assert new_stats["00000"]["status_dict"]["success"] == 2
    assert not any("503" in reason for reason in new_stats["00000"]["status_dict"])
    check_dataset(output, [row["key"] for row in before.values()], output_format)

    again = video2dataset(**args, incremental_mode="retry_failed")
    assert sorted(result.shard_id for result in again.results) == [1]  # only "reset" is left to retry
    assert media_server.hits(urls["reset"]) == 3 and media_server.hits(urls["flaky"]) == 2


def test_retry_failed_keeps_parquet_format_rows_and_media(tmp_path: Path, media_server: MediaServer) -> None:
    source, urls = url_list(tmp_path, media_server)
    output = tmp_path / "out"
    args = {
        "url_list": str(source),
        "input_format": "csv",
        "caption_col": "caption",
        "output_folder": str(output),
        "output_format": "parquet",
        "number_sample_per_shard": 9,
        **FAST,
    }
    video2dataset(**args)
    before = rows_by_caption(output)
    video2dataset(**args, incremental_mode="retry_failed")
    after = rows_by_caption(output)
    assert after["flaky"]["status"] == "success" and after["flaky"]["mp4"]
    for caption in ("good0", "gone", "page", "good1", "good2"):
        assert after[caption] == before[caption], caption  # media bytes included
    assert media_server.hits(urls["gone"]) == 1


def test_retry_failed_is_refused_where_it_cannot_rewrite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tfrecord"):
        video2dataset(
            url_list=str(tmp_path / "x.txt"), output_format="tfrecord", incremental_mode="retry_failed"
        )


@pytest.mark.parametrize(("step", "version"), [(1, "old"), (3, "new"), (5, "new")])
def test_a_kill_during_the_rewrite_leaves_the_old_or_the_new_shard(
    tmp_path: Path, media_server: MediaServer, step: int, version: str
) -> None:
    """Commit steps: 1 journal in place, 2 tar, 3 parquet, 4 stats renamed, 5 journal deleted."""
    source, _ = url_list(tmp_path, media_server)
    output = tmp_path / "out"
    flags = [f"--url_list={source}", "--input_format=csv", "--caption_col=caption"]
    flags += [f"--output_folder={output}", "--output_format=webdataset", "--number_sample_per_shard=9"]
    flags += ["--processes_count=1"]
    flags += ["--thread_count=2", "--timeout=2", "--retries=0", "--show_progress=False"]
    args = {
        "url_list": str(source),
        "input_format": "csv",
        "caption_col": "caption",
        "output_folder": str(output),
        "output_format": "webdataset",
        "number_sample_per_shard": 9,
        **FAST,
    }
    video2dataset(**args)
    old = (rows_by_caption(output), member_bytes(output, "00000", "webdataset"), stats(output))
    process = start(
        cli_command(*flags, "--incremental_mode=retry_failed"), run_env(freeze_step=step), tmp_path / "log"
    )
    assert kill_when(process, frozen(process)), (tmp_path / "log").read_text()

    assert video2dataset(**args).skipped_shards == [0]  # the next run finishes or clears the commit
    now = (rows_by_caption(output), member_bytes(output, "00000", "webdataset"), stats(output))
    if version == "old":
        assert now == old
    else:
        assert now[0]["flaky"]["status"] == "success" and now[2]["00000"]["successes"] == 5
        assert {name: now[1][name] for name in old[1]} == old[1]
    check_dataset(output, [row["key"] for row in old[0].values()], "webdataset")
    assert json.loads((output / "00000_stats.json").read_text())["count"] == 9


def test_dagster_run_config_retry_failed_retries_a_written_partition(
    tmp_path: Path, media_server: MediaServer
) -> None:
    tag = uuid.uuid4().hex
    urls = {
        "good": media_server.url("files", f"video_0000.mp4?{tag}"),
        "flaky": media_server.url("flaky/1", f"video_0001.mp4?{tag}"),
        "gone": media_server.url("status/404", f"gone.mp4?{tag}"),
    }
    folder = tmp_path / "datasets"
    folder.mkdir()
    write_csv(folder / "clips.csv", [{"url": url, "caption": caption} for caption, url in urls.items()])
    settings = {"output_format": "webdataset", "retries": 0, "thread_count": 2, "max_retries": 0}
    spec = {"name": "clips", "url_list": "clips.csv", "input_format": "csv", "caption_col": "caption"}
    spec["output_root"] = "out"
    (folder / "clips.yaml").write_text(yaml.safe_dump({**spec, "stages": {"download": settings}}))
    defs = build_definitions(str(folder))
    download = dg.AssetKey(["clips", "download"])
    retry = {"ops": {"clips__download": {"config": {"retry_failed": True}}}}
    output = folder / "out" / "download"
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            list(defs.assets), selection=[dg.AssetKey(["clips", "shard_plan"])], instance=instance
        ).success
        assert dg.materialize(
            list(defs.assets), selection=[download], partition_key="00000", instance=instance
        ).success
        assert rows_by_caption(output)["flaky"]["error_transient"] is True
        result = dg.materialize(
            list(defs.assets),
            selection=[download],
            partition_key="00000",
            instance=instance,
            run_config=retry,
        )
    assert result.success
    rows = rows_by_caption(output)
    assert (rows["good"]["status"], rows["flaky"]["status"], rows["gone"]["status"]) == (
        "success",
        "success",
        "failed_to_download",
    )
    assert [media_server.hits(urls[c]) for c in ("good", "flaky", "gone")] == [1, 2, 1]
    (materialization,) = [
        e.materialization for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
    ]
    assert materialization.metadata["successes"].value == 2


def test_yt_dlp_failures_are_transient_by_yt_dlp_exception_type(
    tmp_path: Path, media_server: MediaServer
) -> None:
    tag = uuid.uuid4().hex
    urls = {
        "busy": media_server.url("status/503", f"watch?{tag}"),
        "throttled": media_server.url("status/429", f"watch?{tag}"),
        "gone": media_server.url("status/404", f"watch?{tag}"),
        "no video": media_server.url("page", f"watch?{tag}"),
    }
    source = write_csv(tmp_path / "pages.csv", [{"url": url, "caption": c} for c, url in urls.items()])
    output = tmp_path / "out"
    video2dataset(
        url_list=str(source), input_format="csv", caption_col="caption", output_folder=str(output), **FAST
    )
    rows = rows_by_caption(output)
    assert {caption: row["error_transient"] for caption, row in rows.items()} == {
        "busy": True,
        "throttled": True,
        "gone": False,
        "no video": False,
    }
    assert all(row["status"] == "failed_to_download" for row in rows.values())


def test_retry_failed_fetches_signed_and_basic_auth_urls_with_their_secrets(
    tmp_path: Path, media_server: MediaServer
) -> None:
    """The parquet masks credentials, yet a retry fetches the url whole, from the shard's input."""
    tag = uuid.uuid4().hex
    user, password = (quote(part, safe="") for part in BASIC_AUTH)
    signed = media_server.url("signed/1", f"video_0000.mp4?sig={SIGNATURE}&t={tag}")
    basic = media_server.url("signed/1", f"video_0001.mp4?t={tag}").replace("://", f"://{user}:{password}@")
    source = write_csv(
        tmp_path / "videos.csv", [{"url": signed, "caption": "s"}, {"url": basic, "caption": "b"}]
    )
    output = tmp_path / "out"
    args = {"url_list": str(source), "input_format": "csv", "caption_col": "caption"}
    video2dataset(**args, output_folder=str(output), **FAST)
    first = rows_by_caption(output)
    assert {c: (r["status"], r["error_transient"]) for c, r in first.items()} == {
        "s": ("failed_to_download", True),  # 503 on the first request
        "b": ("failed_to_download", True),
    }
    assert SIGNATURE not in first["s"]["url"] and "w0rd" not in first["b"]["url"]
    video2dataset(**args, output_folder=str(output), incremental_mode="retry_failed", **FAST)
    after = rows_by_caption(output)
    assert {c: r["status"] for c, r in after.items()} == {"s": "success", "b": "success"}
    assert SIGNATURE not in after["s"]["url"] and "w0rd" not in after["b"]["url"]
