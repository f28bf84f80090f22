"""Killing real runs at chosen points, and checking what they leave behind.

A run is started in its own session (process group); :func:`kill_when` polls a condition
and SIGKILLs the whole group the moment it holds. Conditions observe the real program:
requests the MediaServer is answering (a fetch), ffmpeg processes in the group (a
transform), or a process that stopped itself at a commit step (``tests/freeze``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyarrow.parquet as pq

from tests.helpers import write_csv
from v2d_core.testing.server import MediaServer

REPO = Path(__file__).resolve().parents[1]
FREEZE_HOOK = Path(__file__).resolve().parent / "freeze"
POLL_SECONDS = 0.005


def run_env(freeze_step: int | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: the freeze hook on PYTHONPATH, armed at commit step ``freeze_step``."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FREEZE_HOOK), str(REPO), env.get("PYTHONPATH")]))
    env.pop("V2D_TEST_FREEZE_AT_COMMIT_STEP", None)
    if freeze_step is not None:
        env["V2D_TEST_FREEZE_AT_COMMIT_STEP"] = str(freeze_step)
    return env


def start(command: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (its own process group), output to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            list(command),
            cwd=REPO,
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "v2d_core.cli", *args]


def run_to_end(command: Sequence[str], env: Mapping[str, str]) -> None:
    """Run ``command`` to its end; it must succeed."""
    done = subprocess.run(list(command), cwd=REPO, env=dict(env), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


def group_processes(group: int) -> list[tuple[int, str, str]]:
    """(pid, command name, state) of every live process of process group ``group``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == group and fields[0] != "Z":
            found.append((int(entry), name, fields[0]))
    return found


def frozen(process: subprocess.Popen[bytes]) -> Callable[[], bool]:
    """True once a process of the run stopped itself at its commit step."""
    return lambda: any(state == "T" for _, _, state in group_processes(process.pid))


def nth_ffmpeg(process: subprocess.Popen[bytes], count: int) -> Callable[[], bool]:
    """True while the ``count``-th ffmpeg process the run started is running."""
    seen: set[int] = set()

    def check() -> bool:
        running = {pid for pid, name, _ in group_processes(process.pid) if name.startswith("ffmpeg")}
        seen.update(running)
        return len(seen) >= count and bool(running)

    return check


def kill_when(process: subprocess.Popen[bytes], condition: Callable[[], bool], timeout: float = 120) -> bool:
    """SIGKILL the run's whole process group once ``condition`` holds; False if the run ended first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if condition():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            _wait_group_gone(process.pid)
            return True
        assert time.monotonic() < deadline, "the kill point was not reached in time"
        time.sleep(POLL_SECONDS)
    return False


def _wait_group_gone(group: int) -> None:
    deadline = time.monotonic() + 30
    while group_processes(group):
        assert time.monotonic() < deadline, f"processes of group {group} outlived SIGKILL"
        time.sleep(0.01)


def shard_names(output: Path) -> list[str]:
    return sorted(p.name.removesuffix(".parquet") for p in output.glob("[0-9]*.parquet"))


def data_keys(output: Path, name: str, output_format: str) -> list[str]:
    """The sample keys of a shard's data (tar members or files), one per member or file."""
    if output_format == "files":
        names = [p.name for p in (output / name).iterdir()]
    else:
        with tarfile.open(output / f"{name}.tar") as tar:
            names = []
            for member in tar:
                source = tar.extractfile(member)
                assert source is not None and len(source.read()) == member.size, member.name
                names.append(member.name)
    assert len(names) == len(set(names)), f"{name}: duplicate members"
    return [n.partition(".")[0] for n in names]


def check_finished_shards(output: Path, output_format: str) -> None:
    """Every shard whose stats exist and whose commit is not pending is whole and consistent."""
    for stats_path in output.glob("*_stats.json"):
        name = stats_path.name.removesuffix("_stats.json")
        if (output / f".{name}.commit").exists():
            continue  # a commit cut short: the next run finishes it
        check_shard(output, name, output_format)


def check_shard(output: Path, name: str, output_format: str) -> list[dict]:
    """The shard's parquet rows, after checking stats, parquet and data agree; a shard is whole."""
    stats = json.loads((output / f"{name}_stats.json").read_text())
    rows = pq.read_table(output / f"{name}.parquet").to_pylist()
    assert stats["count"] == len(rows), name
    successes = sorted(row["key"] for row in rows if row["status"] == "success")
    assert stats["successes"] == len(successes), name
    members = Counter(data_keys(output, name, output_format))
    assert sorted(members) == successes, name
    return rows


def check_dataset(output: Path, keys: Sequence[str], output_format: str) -> list[dict]:
    """Every key exactly once over the shards, every shard whole, nothing temporary left."""
    rows = [row for name in shard_names(output) for row in check_shard(output, name, output_format)]
    assert sorted(row["key"] for row in rows) == sorted(keys)
    finished = sorted(p.name.removesuffix("_stats.json") for p in output.glob("*_stats.json"))
    assert finished == shard_names(output)
    leftovers = [p.name for p in output.iterdir() if p.name.startswith((".", "_"))]
    assert leftovers == [], f"temporaries left: {leftovers}"
    return rows


WAIT_SECONDS = 120  # bounds for waiting on the run; no assertion on how fast anything is


def stalled_run(tmp_path: Path, server: MediaServer) -> tuple[list[str], Path, list[str]]:
    """Two shards of 2: shard 0 is served at once, shard 1 stalls (the server holds its answers)."""
    tag = uuid.uuid4().hex
    urls = [server.url("files", f"video_0000.mp4?{tag}"), server.url("files", f"video_0001.mp4?{tag}")]
    urls += [server.url("delay/600", f"video_0002.mp4?{tag}{i}") for i in range(2)]
    source = write_csv(tmp_path / "videos.csv", [{"url": url} for url in urls])
    output = tmp_path / "out"
    command = cli_command(
        f"--url_list={source}",
        "--input_format=csv",
        f"--output_folder={output}",
        "--output_format=webdataset",
        "--number_sample_per_shard=2",
        "--processes_count=2",
        "--thread_count=2",
        "--timeout=600",
        f"--tmp_dir={tmp_path / 'work'}",
    )
    return command, output, ["000000", "000001", "000010", "000011"]


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)
