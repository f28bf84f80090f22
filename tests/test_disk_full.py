"""A full disk is not the row's fault: the shard fails whole and is redone, no row is marked failed."""

from __future__ import annotations

import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.crash import check_dataset, cli_command, run_env
from tests.helpers import write_csv
from v2d_core.testing.media import make_video
from v2d_core.testing.server import MediaServer


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 kB tmpfs: too small for the videos the test fetches (needs root and mount)."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root and mount): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_tmp_dir_fails_the_shard_whole_and_a_rerun_redoes_it(
    tmp_path: Path, media_server: MediaServer, media_dir: Path, small_disk: Path
) -> None:
    big = make_video(media_dir / f"big_{uuid.uuid4().hex}.mp4", seconds=4, width=640, height=480)
    assert big.stat().st_size > 256_000
    rows = [
        {"url": media_server.url("files", big.name)},
        {"url": media_server.url("files", "video_0000.mp4")},
    ]
    source = write_csv(tmp_path / "videos.csv", rows)
    output = tmp_path / "out"
    args = [
        f"--url_list={source}",
        "--input_format=csv",
        f"--output_folder={output}",
        "--output_format=webdataset",
    ]
    args += ["--processes_count=1", "--thread_count=1", "--max_shard_retry=1", "--number_sample_per_shard=2"]
    # audio taken out of the fetched video: the body goes to a file in tmp_dir (a plain mp4 that
    # nothing reads as a file stays in memory and never touches tmp_dir)
    args.append('--encode_formats={"video": "mp4", "audio": "m4a"}')
    full = subprocess.run(
        cli_command(*args, f"--tmp_dir={small_disk}"),
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert full.returncode == 1, full.stderr[-2000:]
    assert "shard 0 failed after retries: DiskFullError: no space left to write the shard" in full.stdout
    assert not list(output.glob("*.parquet"))  # no row recorded as a failed download
    done = subprocess.run(
        cli_command(*args, f"--tmp_dir={tmp_path / 'work'}"),
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows_written = check_dataset(output, ["000000", "000001"], "webdataset")
    assert [row["status"] for row in rows_written] == ["success", "success"]


def test_a_plain_download_never_writes_its_media_to_the_tmp_dir(
    tmp_path: Path, media_server: MediaServer, media_dir: Path, small_disk: Path
) -> None:
    """Each byte is written once, into the shard: a tmp_dir too small for one video does not matter."""
    big = make_video(media_dir / f"big_{uuid.uuid4().hex}.mp4", seconds=4, width=640, height=480)
    assert big.stat().st_size > 256_000
    rows = [{"url": media_server.url("files", name)} for name in (big.name, "video_0000.mp4")]
    output = tmp_path / "out"
    args = [
        f"--url_list={write_csv(tmp_path / 'videos.csv', rows)}",
        "--input_format=csv",
        f"--output_folder={output}",
        "--output_format=webdataset",
        "--processes_count=1",
        "--number_sample_per_shard=2",
        f"--tmp_dir={small_disk}",
    ]
    done = subprocess.run(cli_command(*args), env=run_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    rows_written = check_dataset(output, ["000000", "000001"], "webdataset")
    assert [row["status"] for row in rows_written] == ["success", "success"]
    with tarfile.open(output / "00000.tar") as tar:
        stored = tar.extractfile("000000.mp4")
        assert stored is not None and stored.read() == big.read_bytes()
