"""A real S3-compatible server on 127.0.0.1 (moto's standalone server) and helpers to look into it.

:func:`s3_server` starts a server on a free port; :func:`new_bucket` gives a test its own
bucket, with the endpoint and credentials in the environment, as a user configures them
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``).
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import fsspec.config
import pyarrow.parquet as pq
import pytest
import s3fs
from moto.server import ThreadedMotoServer

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "v2d-test-key", "AWS_SECRET_ACCESS_KEY": "v2d-test-secret"}


@dataclass(frozen=True)
class Bucket:
    """One test's bucket on the server, and an S3 filesystem configured explicitly to read it back."""

    name: str
    endpoint: str
    fs: Any

    def url(self, path: str = "") -> str:
        return f"s3://{self.name}/{path}".rstrip("/")

    def names(self, prefix: str) -> list[str]:
        """Object names under ``prefix`` (relative to it), sorted."""
        self.fs.invalidate_cache()
        root = f"{self.name}/{prefix.strip('/')}/"
        return sorted(path.removeprefix(root) for path in self.fs.find(root))

    def stats(self, prefix: str) -> dict[str, dict]:
        """Shard name -> its ``_stats.json`` under ``prefix``."""
        return {
            name.removesuffix("_stats.json"): json.loads(self.fs.cat_file(f"{self.name}/{prefix}/{name}"))
            for name in self.names(prefix)
            if name.endswith("_stats.json")
        }

    def status_rows(self, prefix: str) -> list[dict]:
        """Every row of every shard's status parquet under ``prefix``, sorted by key."""
        rows: list[dict] = []
        for name in self.names(prefix):
            if name.endswith(".parquet") and "/" not in name:
                with self.fs.open(f"{self.name}/{prefix}/{name}", "rb") as handle:
                    rows += pq.read_table(handle, columns=["key", "status", "error_message"]).to_pylist()
        return sorted(rows, key=lambda row: row["key"])

    def tar_names(self, path: str) -> list[str]:
        with tarfile.open(fileobj=io.BytesIO(self.fs.cat_file(f"{self.name}/{path}"))) as tar:
            return sorted(tar.getnames())

    def tar_member(self, path: str, member: str) -> bytes:
        with tarfile.open(fileobj=io.BytesIO(self.fs.cat_file(f"{self.name}/{path}"))) as tar:
            data = tar.extractfile(member)
            assert data is not None, f"{member} is not a file in {path}"
            return data.read()


def configure_through_fsspec_only(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reach the server through fsspec's config (as an fsspec config file or ``FSSPEC_S3_*`` sets it),
    with no AWS variable in the environment: only code that goes through fsspec finds it."""
    for name in [*CREDENTIALS, "AWS_ENDPOINT_URL"]:
        monkeypatch.delenv(name)
    options = {
        "endpoint_url": bucket.endpoint,
        "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    clear_filesystem_cache()


def clear_filesystem_cache() -> None:
    """Forget cached S3 filesystems: fsspec keeps one per set of arguments, built with the config of then."""
    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1, a free port; its endpoint url."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def new_bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bucket]:
    """A fresh bucket; the environment points AWS clients (and so s3fs) at the server, as a user sets it."""
    environment = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    clear_filesystem_cache()
    fs = s3fs.S3FileSystem(
        endpoint_url=endpoint,
        key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        skip_instance_cache=True,
    )
    name = f"v2d-{uuid.uuid4().hex[:12]}"
    fs.mkdir(name)
    try:
        yield Bucket(name=name, endpoint=endpoint, fs=fs)
    finally:
        clear_filesystem_cache()
