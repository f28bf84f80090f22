"""A real PostgreSQL server for tests: ``initdb`` into a temporary folder, ``postgres`` on 127.0.0.1.

The binaries are Debian's (``apt-get install postgresql`` puts them in
``/usr/lib/postgresql/<version>/bin``) or any on ``PATH``. PostgreSQL refuses to run as root, so
when the tests run as root the server runs as the ``postgres`` user (or ``nobody``) and its
folder belongs to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from v2d_dagster.testing import free_port

INSTALL_HINT = "PostgreSQL's server binaries (initdb, postgres) are not installed: apt-get install postgresql"


@dataclass(frozen=True)
class Postgres:
    """Where a running server listens and how to log in."""

    host: str
    port: int
    user: str
    password: str
    db_name: str

    def connect(self) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.db_name
        )


def find_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: on ``PATH``, else Debian's newest version."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _server_user() -> str | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@contextmanager
def postgres_server(binaries: Path, timeout: float = 60) -> Iterator[Postgres]:
    """A fresh cluster (password login on 127.0.0.1) with an empty database ``dagster``; stopped by its
    PID and deleted after."""
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="v2d-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    (root / "password").write_text("v2d-test-password\n")
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (root, sockets, root / "password"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    server = Postgres(
        host="127.0.0.1", port=free_port(), user="v2d", password="v2d-test-password", db_name="dagster"
    )
    process = None
    try:
        subprocess.run(
            [
                *(str(binaries / "initdb"), "-D", str(data), "-U", server.user),
                *(f"--pwfile={root / 'password'}", "--auth-host=scram-sha-256", "--auth-local=trust"),
                *("--encoding=UTF8", "--no-locale"),
            ],
            user=user,
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        with (root / "server.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    *(str(binaries / "postgres"), "-D", str(data), "-h", server.host, "-p", str(server.port)),
                    *("-k", str(sockets), "-c", "fsync=off", "-c", "synchronous_commit=off"),
                ],
                user=user,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        _wait_until_ready(server, process, root / "server.log", timeout)
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_ready(server: Postgres, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll until the server takes logins, then create the database."""
    deadline = time.monotonic() + timeout
    admin = Postgres(server.host, server.port, server.user, server.password, "postgres")
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            connection = admin.connect()
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {server.db_name}")
    finally:
        connection.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT: roll back open transactions, close connections), SIGKILL if it hangs."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
