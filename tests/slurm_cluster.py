"""A real single-node Slurm for tests: munged, slurmctld and slurmd on 127.0.0.1, in a temporary folder.

The binaries are Debian's (``apt-get install slurmctld slurmd slurm-client munge``, which
``.ci/install-system-deps`` does). Everything the daemons write (munge key and socket, state,
spool, logs, ``slurm.conf``) lives in the folder; the daemons run in the foreground as processes
this module starts and stops by PID. Clients find the cluster through ``SLURM_CONF``.

Running as root in a container takes: ``SlurmUser``/``SlurmdUser`` root, ``proctrack/linuxproc``
and ``task/none`` (no cgroups), no accounting, and munged started with ``--force`` (its key and
socket are not in the system folders it insists on).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from v2d_dagster.testing import free_port

DAEMONS = {"munged": "munge", "mungekey": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd"}
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo")
INSTALL = "apt-get install slurmctld slurmd slurm-client munge"


@dataclass(frozen=True)
class Slurm:
    """A running cluster: its config file (``SLURM_CONF`` for clients) and its folder."""

    conf: Path
    root: Path
    cpus: int

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm's clients."""
        return {"SLURM_CONF": str(self.conf)}

    def jobs(self) -> list[str]:
        """``job_id state`` of every job the controller still lists."""
        done = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i %T"],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout.split("\n")[:-1]


def missing_programs() -> list[str]:
    """What is missing to start a cluster, with the Debian package to install for each."""
    missing = [f"{name} ({package})" for name, package in DAEMONS.items() if not _find(name)]
    missing += [f"{name} (slurm-client)" for name in CLIENTS if not shutil.which(name)]
    return missing


@contextmanager
def slurm_cluster(cpus: int = 2, timeout: float = 60) -> Iterator[Slurm]:
    """A fresh single-node cluster (node ``localhost``, partition ``debug``) with ``cpus`` CPUs;
    every job cancelled, the daemons stopped by PID and the folder deleted after."""
    root = Path(tempfile.mkdtemp(prefix="v2d-slurm-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        socket = _start_munge(root, stack)
        conf = _write_conf(root, socket, cpus)
        env = {**os.environ, "SLURM_CONF": str(conf)}
        cluster = Slurm(conf=conf, root=root, cpus=cpus)
        logs = root / "log"
        _start(stack, [_find("slurmctld"), "-D", "-i", "-f", str(conf)], env, logs / "slurmctld.out")
        _start(stack, [_find("slurmd"), "-D", "-N", "localhost", "-f", str(conf)], env, logs / "slurmd.out")
        stack.callback(_cancel_all, cluster)
        _wait_until_idle(cluster, timeout)
        yield cluster


def _find(name: str) -> str:
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").is_file() else "")


def _start_munge(root: Path, stack: ExitStack) -> Path:
    folder = root / "munge"
    folder.mkdir(mode=0o700)
    key = folder / "munge.key"
    subprocess.run([_find("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
    key.chmod(0o600)
    socket = folder / "munge.socket"
    command = [_find("munged"), "--foreground", "--force", f"--socket={socket}", f"--key-file={key}"]
    command += [f"--log-file={folder / 'munged.log'}", f"--pid-file={folder / 'munged.pid'}"]
    command += [f"--seed-file={folder / 'munged.seed'}"]
    (root / "log").mkdir()
    process = _start(stack, command, dict(os.environ), root / "log" / "munged.out")
    _wait_for(lambda: socket.exists(), process, root / "log" / "munged.out", 30)
    return socket


def _write_conf(root: Path, socket: Path, cpus: int) -> Path:
    for name in ("state", "spool"):
        (root / name).mkdir()
    settings = {
        "ClusterName": "v2dtest",
        "SlurmctldHost": "localhost(127.0.0.1)",
        "SlurmctldPort": free_port(),
        "SlurmdPort": free_port(),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "AuthInfo": f"socket={socket}",
        "CredType": "cred/munge",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "log" / "slurmctld.log",
        "SlurmdLogFile": root / "log" / "slurmd.log",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "MpiDefault": "none",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_CPU",
        "ReturnToService": 2,
        "SchedulerParameters": "sched_interval=1",
        "NodeName": f"localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN",
        "PartitionName": "debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    }
    conf = root / "slurm.conf"
    conf.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    return conf


def _start(stack: ExitStack, command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    stack.callback(_stop, process)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _wait_until_idle(cluster: Slurm, timeout: float) -> None:
    """Until the node takes jobs."""
    env = {**os.environ, **cluster.env}

    def idle() -> bool:
        done = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=env, capture_output=True, text=True)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    deadline = time.monotonic() + timeout
    while not idle():
        if time.monotonic() > deadline:
            logs = "".join(path.read_text()[-1500:] for path in sorted((cluster.root / "log").glob("*")))
            raise RuntimeError(f"the Slurm node did not become idle in {timeout} s:\n{logs}")
        time.sleep(0.2)


def _wait_for(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{process.args!r} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def _cancel_all(cluster: Slurm) -> None:
    """Cancel what a test left queued and wait for it to end, so no job outlives the daemons."""
    env = {**os.environ, **cluster.env}
    user = f"--user={getpass.getuser()}"
    subprocess.run(["scancel", "--full", user], env=env, capture_output=True, timeout=60)
    deadline = time.monotonic() + 60
    while cluster.jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
