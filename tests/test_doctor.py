"""The tools v2d runs: which ffmpeg, yt-dlp's YouTube stack, and ``v2d-doctor`` reporting them."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yt_dlp
import yt_dlp.version

from tests.helpers import write_csv
from v2d_core.config import ReadingConfig
from v2d_core.doctor import MAX_YTDLP_AGE_DAYS, environment_facts
from v2d_core.fetch.ytdlp import YtDlpFetcher
from v2d_core.fetch.ytdlp_stack import ytdlp_release_date
from v2d_core.ffmpeg_binary import ENCODERS, MINIMUM_VERSION, probe, resolve_ffmpeg
from v2d_core.testing.server import MediaServer

DOCTOR = Path(sys.executable).parent / "v2d-doctor"
MINIMUM = ".".join(map(str, MINIMUM_VERSION))


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert DOCTOR.is_file(), f"{DOCTOR} is not installed: pip install -e ."
    return subprocess.run([str(DOCTOR), *args], env=env, capture_output=True, text=True, timeout=120)


def doctor_json(env: dict[str, str]) -> dict[str, Any]:
    done = doctor(env, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def env_with(path: list[Path] | None = None, **extra: str) -> dict[str, str]:
    """This environment with ``PATH`` replaced (when given) and ``extra`` added, V2D_FFMPEG unset."""
    env = {key: value for key, value in os.environ.items() if key != "V2D_FFMPEG"}
    if path is not None:
        env["PATH"] = os.pathsep.join(map(str, path))
    return env | extra


def old_ffmpeg_on_path() -> str:
    """An ffmpeg on PATH older than the minimum (Debian 12's 5.1), or skip naming what is missing."""
    found = shutil.which("ffmpeg")
    if found is None or probe(found, "PATH").problem is None:
        pytest.skip(f"needs an ffmpeg older than {MINIMUM} on PATH (apt-get install ffmpeg on Debian 12)")
    return found


def test_yt_dlp_with_v2d_options_reports_deno_and_ejs_even_without_the_venv_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = YtDlpFetcher(ReadingConfig(), {"video": "mp4"}).ytdl_params(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # yt-dlp finds no deno, node or bun there by itself
    header: list[str] = []

    class Capture:
        def debug(self, message: str) -> None:
            header.append(message)

        info = warning = error = debug

    with yt_dlp.YoutubeDL(params | {"verbose": True, "logger": Capture(), "quiet": False}):
        pass
    runtimes = next(line for line in header if "JS runtimes:" in line)
    libraries = next(line for line in header if "Optional libraries:" in line)
    assert runtimes.startswith("[debug] JS runtimes: deno-"), runtimes
    assert f"yt_dlp_ejs-{importlib.metadata.version('yt-dlp-ejs')}" in libraries


def test_doctor_reports_ffmpeg_yt_dlp_runtime_ejs_and_guard() -> None:
    facts = doctor_json(env_with())
    assert facts["ffmpeg"]["path"] == resolve_ffmpeg().path
    assert facts["ffmpeg"]["version"] == resolve_ffmpeg().version
    assert facts["yt_dlp"]["version"] == yt_dlp.version.__version__
    assert facts["yt_dlp"]["age_days"] >= 0
    assert facts["js_runtime"]["name"] == "deno" and facts["js_runtime"]["supported"] is True
    assert Path(facts["js_runtime"]["path"]).is_file()
    assert facts["ejs"] == importlib.metadata.version("yt-dlp-ejs")
    assert facts["address_guard"].startswith("off")  # the suite sets V2D_ALLOW_PRIVATE_NETWORKS=1
    guarded = doctor_json(env_with(V2D_ALLOW_PRIVATE_NETWORKS="0"))
    assert guarded["address_guard"] == "on"
    text = doctor(env_with()).stdout
    assert f"ffmpeg: {resolve_ffmpeg().version}" in text and "JS runtime: deno" in text


def test_doctor_warns_when_yt_dlp_is_older_than_60_days_and_says_how_to_upgrade() -> None:
    released = ytdlp_release_date()
    assert released is not None
    fresh = environment_facts(today=released + datetime.timedelta(days=MAX_YTDLP_AGE_DAYS))
    stale = environment_facts(today=released + datetime.timedelta(days=MAX_YTDLP_AGE_DAYS + 1))
    assert not [warning for warning in fresh["warnings"] if "yt-dlp" in warning]
    (warning,) = [warning for warning in stale["warnings"] if "days old" in warning]
    assert f"is {MAX_YTDLP_AGE_DAYS + 1} days old" in warning
    assert 'pip install -U "yt-dlp[default]"' in warning


def test_doctor_lists_yt_dlp_plugins_and_po_token_providers(tmp_path: Path) -> None:
    package = tmp_path / "plugins" / "yt_dlp_plugins" / "extractor"
    package.mkdir(parents=True)
    (package / "v2d_probe.py").write_text(
        textwrap.dedent(
            """
            from yt_dlp.extractor.common import InfoExtractor
            from yt_dlp.extractor.youtube.pot.provider import (
                PoTokenProvider, PoTokenResponse, register_provider,
            )


            class V2dProbeIE(InfoExtractor):
                _VALID_URL = r"v2dprobe:(?P<id>\\w+)"

                def _real_extract(self, url):
                    return {"id": self._match_id(url), "url": "http://127.0.0.1:9/none.mp4"}


            @register_provider
            class V2dProbePTP(PoTokenProvider):
                PROVIDER_VERSION = "0.1.0"

                def is_available(self):
                    return True

                def _real_request_pot(self, request):
                    return PoTokenResponse(po_token="token")
            """
        )
    )
    plugins = doctor_json(env_with(PYTHONPATH=str(tmp_path / "plugins")))["ytdlp_plugins"]
    assert "V2dProbeIE" in plugins["extractors"]
    assert plugins["po_token_providers"] == ["yt_dlp_plugins.extractor.v2d_probe.V2dProbePTP"]
    assert doctor_json(env_with())["ytdlp_plugins"]["extractors"] == []


def test_without_ffmpeg_on_path_v2d_runs_the_bundled_build(tmp_path: Path) -> None:
    facts = doctor_json(env_with([tmp_path]))
    assert facts["ffmpeg"]["source"] == "imageio-ffmpeg"
    assert facts["ffmpeg"]["note"] == ""
    assert probe(facts["ffmpeg"]["path"], "test").problem is None


def test_a_recent_ffmpeg_on_path_is_the_one_v2d_runs(tmp_path: Path) -> None:
    import imageio_ffmpeg

    (tmp_path / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    facts = doctor_json(env_with([tmp_path]))
    assert (facts["ffmpeg"]["source"], facts["ffmpeg"]["path"]) == ("PATH", imageio_ffmpeg.get_ffmpeg_exe())


def test_a_broken_ffmpeg_on_path_is_passed_over_for_the_bundled_build(tmp_path: Path) -> None:
    (tmp_path / "ffmpeg").symlink_to("/bin/true")
    facts = doctor_json(env_with([tmp_path]))
    assert facts["ffmpeg"]["source"] == "imageio-ffmpeg"
    true = os.path.realpath("/bin/true")
    assert (
        facts["ffmpeg"]["note"]
        == f"PATH ffmpeg {true} does not print an ffmpeg version line; using the bundled build"
    )


def test_an_old_ffmpeg_on_path_is_passed_over_for_the_bundled_build() -> None:
    old = old_ffmpeg_on_path()
    facts = doctor_json(env_with())
    assert facts["ffmpeg"]["source"] == "imageio-ffmpeg"
    assert f"older than {MINIMUM}; using the bundled build" in facts["ffmpeg"]["note"]
    assert os.path.realpath(old) in facts["ffmpeg"]["note"]
    assert resolve_ffmpeg().source == "imageio-ffmpeg"  # and so do this suite's fixtures


def test_an_old_v2d_ffmpeg_is_an_error_naming_its_version() -> None:
    old = old_ffmpeg_on_path()
    done = doctor(env_with(V2D_FFMPEG=old))
    assert done.returncode == 1
    assert f"V2D_FFMPEG: {old} is ffmpeg {probe(old, 'PATH').version}, older than {MINIMUM}" in done.stdout


def test_a_v2d_ffmpeg_that_is_not_ffmpeg_stops_the_run_before_any_work(
    tmp_path: Path, media_server: MediaServer
) -> None:
    url_list = write_csv(tmp_path / "videos.csv", [{"url": media_server.url("files", "video_0000.mp4")}])
    command = [
        sys.executable,
        "-m",
        "v2d_core.cli",
        f"--url_list={url_list}",
        f"--output_folder={tmp_path / 'out'}",
    ]
    done = subprocess.run(
        command, env=env_with(V2D_FFMPEG="/bin/true"), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert (
        "video2dataset: error: V2D_FFMPEG ffmpeg /bin/true does not print an ffmpeg version line"
        in done.stderr
    )
    assert not (tmp_path / "out").exists()
    assert doctor(env_with(V2D_FFMPEG="/bin/true")).returncode == 1


def test_each_run_logs_its_tools_first(tmp_path: Path, media_server: MediaServer) -> None:
    url_list = write_csv(tmp_path / "videos.csv", [{"url": media_server.url("files", "video_0000.mp4")}])
    command = [
        sys.executable,
        "-m",
        "v2d_core.cli",
        f"--url_list={url_list}",
        f"--output_folder={tmp_path / 'out'}",
        "--show_progress=False",
    ]
    done = subprocess.run(command, env=env_with(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    binary = resolve_ffmpeg()
    assert lines[0] == f"video2dataset: ffmpeg: {binary.version} ({binary.source}) {binary.path}" + (
        f"; {binary.note}" if binary.note else ""
    )
    assert lines[1].startswith(f"video2dataset: yt-dlp: {yt_dlp.version.__version__} (")
    assert lines[2].startswith("video2dataset: JS runtime: deno ")
    assert lines[5].startswith("video2dataset: address guard: off")


def test_what_an_ffmpeg_reported_is_kept_until_the_binary_changes(tmp_path: Path) -> None:
    """A run's start skips probing a known ffmpeg; an upgraded one (a changed file) is probed again."""
    calls = tmp_path / "calls"
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()

    def install(version: str) -> None:
        encoders = "".join(f" V....D {name} x\\n" for name in sorted(ENCODERS))
        fake.write_text(
            f'#!/bin/sh\necho "$@" >> {calls}\n'
            f'case "$1" in -version) echo "ffmpeg version {version}";; *) printf "{encoders}";; esac\n'
        )
        fake.chmod(0o755)

    def resolved() -> dict[str, Any]:
        return doctor_json(
            env_with([fake.parent, Path("/bin"), Path("/usr/bin")], XDG_CACHE_HOME=str(tmp_path))
        )["ffmpeg"]

    install("9.1")
    first, second = resolved(), resolved()
    assert first == second and (first["source"], first["version"]) == ("PATH", "9.1")
    assert calls.read_text().splitlines() == ["-version", "-hide_banner -encoders"]
    install("9.2.1")
    assert resolved()["version"] == "9.2.1"
    assert len(calls.read_text().splitlines()) == 4
