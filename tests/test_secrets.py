"""Secrets: credentials in urls (user-info, signed-url parameters), in the url list's own url,
in yt-dlp's cookie file, proxy and options never reach an output file, a log line, an error
message or Dagster's event log. Each test hands v2d real secrets and greps everything it wrote."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
import yt_dlp

from tests.helpers import status_rows, write_csv
from v2d_core.config import ReadingConfig, YtArgs
from v2d_core.errors import FetchError, describe
from v2d_core.fetch import YtDlpFetcher
from v2d_core.redact import MASK, redact_mapping, redact_text
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions

REPO = Path(__file__).resolve().parents[1]
URL_PASSWORD = "URL-SECRET-pw1"
SIGNATURE = "SIG-SECRET-x9"
TOKEN = "TOKEN-SECRET-zz"
LIST_PASSWORD = "LIST-SECRET-77"
COOKIE = "COOKIE-SECRET-abc"
PROXY_PASSWORD = "PROXY-SECRET-55"
ACCOUNT_PASSWORD = "ACCOUNT-SECRET-88"
HEADER_TOKEN = "HEADER-SECRET-66"
SECRETS = (
    URL_PASSWORD,
    SIGNATURE,
    TOKEN,
    LIST_PASSWORD,
    COOKIE,
    PROXY_PASSWORD,
    ACCOUNT_PASSWORD,
    HEADER_TOKEN,
)


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def everything_written(folder: Path) -> str:
    """Every file under ``folder`` as text: parquet rows, tar members, the rest as bytes."""
    parts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        elif path.suffix == ".tar":
            with tarfile.open(path) as tar:
                parts += [tar.extractfile(m).read().decode("utf-8", "replace") for m in tar if m.isfile()]  # type: ignore[union-attr]
        else:
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


@pytest.fixture
def served(tmp_path: Path, media_dir: Path) -> Path:
    """A folder for a private server: one video and, later, the url list."""
    folder = tmp_path / "served"
    folder.mkdir()
    shutil.copy(media_dir / "video_0000.mp4", folder / "video.mp4")
    return folder


@pytest.fixture
def cookiefile(tmp_path: Path) -> Path:
    path = tmp_path / "cookies.txt"
    path.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE}\n")
    return path


def secret_rows(server: MediaServer) -> list[dict[str, str]]:
    """Rows whose urls carry credentials: basic auth, a signed url, a token; and a yt-dlp page."""
    with_auth = server.base_url.replace("http://", f"http://user:{URL_PASSWORD}@")
    return [
        {"url": f"{with_auth}/files/video.mp4"},
        {"url": f"{with_auth}/status/404/video.mp4"},
        {"url": server.url("files", f"video.mp4?X-Amz-Credential=AKIA&X-Amz-Signature={SIGNATURE}")},
        {"url": server.url("status/403", f"video.mp4?token={TOKEN}")},
        {"url": server.embed_url("/files/video.mp4")},
    ]


def test_yt_dlp_really_puts_cookie_values_in_its_info(served: Path, cookiefile: Path, tmp_path: Path) -> None:
    """The control for the next test: without v2d's trimming, the metadata would carry the cookie."""
    with (
        MediaServer(served) as server,
        yt_dlp.YoutubeDL(
            {"quiet": True, "cookiefile": str(cookiefile), "paths": {"home": str(tmp_path)}}
        ) as ydl,
    ):
        info = ydl.extract_info(server.embed_url("/files/video.mp4"), download=True)
    assert COOKIE in json.dumps(ydl.sanitize_info(info, remove_private_keys=True))


def test_a_cli_run_keeps_credentials_out_of_every_output_and_its_logs(
    served: Path, cookiefile: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    yt_args = {"cookiefile": str(cookiefile), "yt_metadata_args": {"get_info": True}}
    config.write_text(yaml.safe_dump({"reading": {"yt_args": yt_args, "retries": 0}}))
    output = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "V2D_ALLOW_PRIVATE_NETWORKS"}  # the flag alone
    with MediaServer(served) as server:
        write_csv(served / "urls.csv", secret_rows(server))
        url_list = server.url("files", "urls.csv").replace("http://", f"http://lister:{LIST_PASSWORD}@")
        command = [
            sys.executable, "-m", "v2d_core.cli", f"--url_list={url_list}", "--input_format=csv",
            f"--output_folder={output}", "--output_format=webdataset", f"--config={config}",
            "--processes_count=1", "--thread_count=4", "--allow_private_networks=True", "--timeout=10",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr
    rows = sorted(status_rows(output), key=lambda row: row["key"])
    assert [row["status"] for row in rows] == [
        "success",
        "failed_to_download",
        "success",
        "failed_to_download",
        "success",
    ]
    assert rows[0]["url"].startswith(f"http://{MASK}@127.0.0.1:")  # recorded, masked
    assert "HTTP 404" in rows[1]["error_message"] and f"{MASK}@" in rows[1]["error_message"]
    assert f"X-Amz-Signature={MASK}" in rows[2]["url"]
    assert "yt_meta_dict" in everything_written(output)  # the page's info was written, without cookies
    assert leaks(everything_written(output)) == []
    assert leaks(done.stdout + done.stderr) == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_yt_dlp_proxy_account_and_header_secrets_stay_out_of_errors_and_logs(
    media_server: MediaServer, cookiefile: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    options = {
        "verbose": True,  # yt-dlp logs its params, proxy map and headers
        "password": ACCOUNT_PASSWORD,
        "http_headers": {"Authorization": f"Bearer {HEADER_TOKEN}"},
    }
    yt_args = YtArgs(
        proxy=f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:{free_port()}",  # nobody listens
        cookiefile=str(cookiefile),
        ytdl_options=options,
    )
    fetcher = YtDlpFetcher(ReadingConfig(timeout=5, retries=0, yt_args=yt_args), {"video": "mp4"})
    with caplog.at_level(logging.DEBUG), pytest.raises(FetchError) as caught:
        fetcher.fetch(media_server.embed_url("/files/video_0000.mp4"), tmp_path)
    assert "proxy" in caplog.text.lower() and "params" in caplog.text  # the logs were captured
    assert leaks(caplog.text) == []
    assert leaks(describe(caught.value)) == []


def test_dagster_event_logs_and_metadata_carry_no_credentials(served: Path, tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    with MediaServer(served) as server:
        write_csv(served / "urls.csv", secret_rows(server)[:4])
        url_list = server.url("files", "urls.csv").replace("http://", f"http://lister:{LIST_PASSWORD}@")
        stage = {"processes_count": 1, "thread_count": 4, "timeout": 10, "retries": 0, "max_retries": 0}
        spec = {
            "name": "secret",
            "url_list": url_list,
            "input_format": "csv",
            "output_root": str(tmp_path / "out"),
        }
        (datasets / "secret.yaml").write_text(yaml.safe_dump(spec | {"stages": {"download": stage}}))
        defs = build_definitions(str(datasets))
        with dg.DagsterInstance.ephemeral() as instance:
            plan = dg.materialize(
                list(defs.assets), selection=[dg.AssetKey(["secret", "shard_plan"])], instance=instance
            )
            download = dg.materialize(
                list(defs.assets),
                selection=[dg.AssetKey(["secret", "download"])],
                partition_key="00000",
                instance=instance,
            )
            logs = [str(record) for run in (plan, download) for record in instance.all_logs(run.run_id)]
    assert download.success
    assert "HTTP 404" in "\n".join(logs)  # the failures' messages are in the event log
    definitions = [str(spec) for assets in defs.assets or [] for spec in getattr(assets, "specs", [assets])]
    assert leaks("\n".join(logs + definitions)) == []
    # (out/_shard_inputs is the plan's copy of the url list: the input itself, kept fetchable)
    assert leaks(everything_written(tmp_path / "out" / "download")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://AKIAKEY:s3cr3t%2Fx@bucket/a.csv", "s3://***@bucket/a.csv"),
        ("https://www.tiktok.com/@someone/video/1", "https://www.tiktok.com/@someone/video/1"),
        ("gs://bucket/a?X-Goog-Signature=abc&x=1", "gs://bucket/a?X-Goog-Signature=***&x=1"),
        ("failed: Authorization: Bearer abc.def", "failed: Authorization: ***"),
        ('{"password": "hunter2"}', '{"password": "***"}'),
        ("https://example.com/v.mp4?v=1", "https://example.com/v.mp4?v=1"),
        # a password holding "@", and a protocol-relative url
        ("get https://user:p@ss@host.com/v.mp4 now", "get https://***@host.com/v.mp4 now"),
        ("src=//user:pw@cdn.example/v.mp4", "src=//***@cdn.example/v.mp4"),
        # each provider's signing parameters, one by one
        (
            "https://b.s3.amazonaws.com/v?X-Amz-Credential=AK&X-Amz-Signature=ab&v=2",
            "https://b.s3.amazonaws.com/v?X-Amz-Credential=***&X-Amz-Signature=***&v=2",
        ),
        (
            "https://storage.googleapis.com/b/v?X-Goog-Credential=c&X-Goog-Signature=s",
            "https://storage.googleapis.com/b/v?X-Goog-Credential=***&X-Goog-Signature=***",
        ),
        (
            "https://a.blob.core.windows.net/c/v?sv=2020-08&se=2026-12&sig=a%3D",
            "https://a.blob.core.windows.net/c/v?sv=2020-08&se=***&sig=***",
        ),
        (
            "https://d.cloudfront.net/v?Policy=p&Signature=s&Key-Pair-Id=k",
            "https://d.cloudfront.net/v?Policy=***&Signature=***&Key-Pair-Id=***",
        ),
        (
            "https://a.akamaized.net/v.mp4?__token__=exp=1~acl=/*~hmac=ab12",
            "https://a.akamaized.net/v.mp4?__token__=***",
        ),
        ("https://a.akamaized.net/v.mp4?hdnts=exp=1~hmac=ab12", "https://a.akamaized.net/v.mp4?hdnts=***"),
        (
            "https://x.aliyuncs.com/v.mp4?auth_key=1444435200-0-0-ab",
            "https://x.aliyuncs.com/v.mp4?auth_key=***",
        ),
        (
            "https://x.example/v.mp4?token=t&signature=s&key=k&sig=g",
            "https://x.example/v.mp4?token=***&signature=***&key=***&sig=***",
        ),
    ],
)
def test_redact_text_masks_credentials_and_keeps_the_rest(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_mapping_masks_storage_options_and_nested_urls() -> None:
    options = {
        "key": "AKIAIOSFODNN7",
        "secret": "wJalrXUtnFEMI",
        "client_kwargs": {"endpoint_url": "https://u:p4ss@minio.local", "region_name": "eu"},
        "anon": False,
    }
    assert redact_mapping(options) == {
        "key": MASK,
        "secret": MASK,
        "client_kwargs": {"endpoint_url": f"https://{MASK}@minio.local", "region_name": "eu"},
        "anon": False,
    }
