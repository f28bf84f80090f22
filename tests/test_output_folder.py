"""The output folder: one run at a time, and a clear error when it cannot be one."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.crash import cli_command, run_env, stalled_run, start, wait_for
from tests.helpers import write_csv
from v2d_core.testing.server import MediaServer


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command(*args), env=run_env(), capture_output=True, text=True, timeout=240)


def test_a_second_run_on_the_same_output_folder_is_refused_naming_the_holder(
    tmp_path: Path, media_server: MediaServer
) -> None:
    command, output, _ = stalled_run(tmp_path, media_server)
    log = tmp_path / "log"
    first = start(command, run_env(), log)
    try:
        wait_for(lambda: (output / "00000_stats.json").exists(), first, log)
        second = subprocess.run(command, env=run_env(), capture_output=True, text=True, timeout=240)
        assert second.returncode == 2
        assert f"another run is writing {output}" in second.stderr
        assert f'"pid": {first.pid}' in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # The lock died with its holder: the next run takes it and finishes the dataset.
    done = subprocess.run(
        [arg if not arg.startswith("--timeout=") else "--timeout=1" for arg in command],
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (output / ".v2d.lock").exists()


def test_an_output_folder_that_is_a_file_is_a_clear_error(tmp_path: Path, media_server: MediaServer) -> None:
    source = write_csv(tmp_path / "videos.csv", [{"url": media_server.url("files", "video_0000.mp4")}])
    target = tmp_path / "dataset"
    target.write_text("not a folder")
    done = run_cli(f"--url_list={source}", "--input_format=csv", f"--output_folder={target}")
    assert done.returncode == 2
    assert (
        done.stderr.splitlines()[-1]
        == f"video2dataset: error: output_folder {target} is a file, not a folder"
    )
    assert "Traceback" not in done.stderr
    assert target.read_text() == "not a folder"


def test_control_characters_from_inputs_and_servers_never_reach_the_terminal(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url = media_server.url("status/404", "\x1b[2J\x1b]0;owned\x07clip.mp4")
    source = write_csv(tmp_path / "videos.csv", [{"url": url}])
    done = run_cli(f"--url_list={source}", "--input_format=csv", f"--output_folder={tmp_path / 'out'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HTTP 404" in done.stdout
    assert "\\x1b[2J\\x1b]0;owned\\x07clip.mp4" in done.stdout  # shown, escaped
    assert not any(char in done.stdout + done.stderr for char in "\x1b\x07")


@pytest.mark.parametrize("column", ["key", "status", "error_message"])
def test_a_user_column_named_like_a_status_column_is_refused_before_any_work(
    tmp_path: Path, media_server: MediaServer, column: str
) -> None:
    url = media_server.url("files", "video_0000.mp4")
    source = write_csv(tmp_path / "videos.csv", [{"url": url, column: "mine"}])
    output = tmp_path / "out"
    done = run_cli(
        f"--url_list={source}", "--input_format=csv", f"--output_folder={output}",
        f"--save_additional_columns={column}",
    )  # fmt: skip
    assert done.returncode == 2
    assert f"save_additional_columns ['{column}']: v2d writes columns of these names itself" in done.stderr
    assert not output.exists()


def test_a_run_stopped_by_its_inputs_leaves_no_empty_output_folder(tmp_path: Path) -> None:
    """A missing input tar is found after the output folder is locked: the folder this run made
    is gone again, and a folder that was there before stays."""
    missing = str(tmp_path / "dataset" / "{00000..00001}.tar")
    fresh = tmp_path / "fresh_output"
    result = run_cli(
        f"--url_list={missing}", "--input_format=webdataset", "--stage=subset", f"--output_folder={fresh}"
    )
    assert result.returncode == 2
    assert "input tar" in result.stderr and "does not exist" in result.stderr
    assert not fresh.exists()
    kept = tmp_path / "kept_output"
    kept.mkdir()
    result = run_cli(
        f"--url_list={missing}", "--input_format=webdataset", "--stage=subset", f"--output_folder={kept}"
    )
    assert result.returncode == 2
    assert kept.is_dir()
