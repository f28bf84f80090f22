"""``v2d-doctor``: the tools a run will use, their versions, and what needs attention.

:func:`environment_facts` is the one list of these facts, as a plain dict: the command
prints it, each run logs it first (:func:`fact_lines`), and Dagster runs attach it as
metadata.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
from typing import Any

import yt_dlp.version

from v2d_core.config import ReadingConfig
from v2d_core.errors import ConfigError
from v2d_core.fetch.ytdlp_stack import ejs_version, js_runtime, ytdlp_plugins, ytdlp_release_date
from v2d_core.ffmpeg_binary import resolve_ffmpeg

LOGGER = logging.getLogger(__name__)
MAX_YTDLP_AGE_DAYS = 60
UPGRADE_HINT = 'pip install -U "yt-dlp[default]"'


def environment_facts(
    reading: ReadingConfig | None = None, today: datetime.date | None = None
) -> dict[str, Any]:
    """ffmpeg, yt-dlp (version, age), JS runtime, EJS, yt-dlp plugins, the address guard, and warnings.

    ``reading`` is the run's fetch settings (the defaults, environment included, without one).
    """
    reading = reading if reading is not None else ReadingConfig()
    facts: dict[str, Any] = {
        "ffmpeg": _ffmpeg_facts(),
        "yt_dlp": _ytdlp_facts(today or datetime.date.today()),
        "js_runtime": _runtime_facts(),
        "ejs": ejs_version(),
        "ytdlp_plugins": ytdlp_plugins(),
        "address_guard": _guard_setting(reading),
    }
    facts["warnings"] = _warnings(facts)
    return facts


def fact_lines(facts: dict[str, Any]) -> list[str]:
    """The facts as short lines for a log or a terminal (warnings are ``facts["warnings"]``)."""
    ffmpeg, ytdlp, runtime = facts["ffmpeg"], facts["yt_dlp"], facts["js_runtime"]
    plugins = facts["ytdlp_plugins"]
    if "error" in ffmpeg:
        ffmpeg_line = f"ffmpeg: ERROR {ffmpeg['error']}"
    else:
        ffmpeg_line = f"ffmpeg: {ffmpeg['version']} ({ffmpeg['source']}) {ffmpeg['path']}"
        ffmpeg_line += f"; {ffmpeg['note']}" if ffmpeg["note"] else ""
    age = ytdlp["age_days"]
    lines = [
        ffmpeg_line,
        f"yt-dlp: {ytdlp['version']}" + (f" ({age} days old)" if age is not None else ""),
        f"JS runtime: {runtime['name']} {runtime['version'] or 'not found'} {runtime['path'] or ''}".rstrip(),
        f"EJS (yt-dlp-ejs): {facts['ejs'] or 'not installed'}",
        "yt-dlp plugins: "
        + (", ".join(plugins["extractors"] + plugins["postprocessors"]) or "none")
        + f"; PO-token providers: {', '.join(plugins['po_token_providers']) or 'none'}",
        f"address guard: {facts['address_guard']}",
    ]
    return lines


def log_environment(reading: ReadingConfig) -> dict[str, Any]:
    """Log the facts at the start of a run and return them; a ConfigError when ffmpeg is unusable."""
    resolve_ffmpeg()
    facts = environment_facts(reading)
    for line in fact_lines(facts):
        LOGGER.info("%s", line)
    for warning in facts["warnings"]:
        LOGGER.warning("%s", warning)
    return facts


def _ffmpeg_facts() -> dict[str, Any]:
    try:
        binary = resolve_ffmpeg()
    except ConfigError as error:
        return {"error": str(error)}
    return {"path": binary.path, "version": binary.version, "source": binary.source, "note": binary.note}


def _ytdlp_facts(today: datetime.date) -> dict[str, Any]:
    released = ytdlp_release_date()
    return {
        "version": yt_dlp.version.__version__,
        "released": released.isoformat() if released else None,
        "age_days": (today - released).days if released else None,
    }


def _runtime_facts() -> dict[str, Any]:
    runtime = js_runtime()
    return {
        "name": runtime.name,
        "path": runtime.path,
        "version": runtime.version,
        "supported": runtime.supported,
    }


def _guard_setting(reading: ReadingConfig) -> str:
    if reading.allow_private_networks:
        return "off (allow_private_networks: private, loopback and reserved addresses are fetched)"
    allowed = ", ".join(str(network) for network in reading.allowed_networks)
    return "on" + (f", allowing {allowed}" if allowed else "")


def _warnings(facts: dict[str, Any]) -> list[str]:
    found = []
    if "error" in facts["ffmpeg"]:
        found.append(f"no usable ffmpeg: {facts['ffmpeg']['error']}")
    age = facts["yt_dlp"]["age_days"]
    if age is not None and age > MAX_YTDLP_AGE_DAYS:
        found.append(
            f"yt-dlp {facts['yt_dlp']['version']} is {age} days old (over {MAX_YTDLP_AGE_DAYS}); YouTube "
            f"changes break old releases within weeks: upgrade with {UPGRADE_HINT}"
        )
    runtime = facts["js_runtime"]
    if runtime["version"] is None or not runtime["supported"]:
        found.append(
            f"no supported JavaScript runtime for yt-dlp ({runtime['name']}): YouTube formats need one; "
            'pip install "deno>=2.6.5"'
        )
    if facts["ejs"] is None:
        found.append(f"yt-dlp-ejs is not installed: YouTube's challenges go unsolved; {UPGRADE_HINT}")
    return found


def main(argv: list[str] | None = None) -> None:
    """Print the facts (``--json`` for the dict); exit 1 when ffmpeg is unusable."""
    parser = argparse.ArgumentParser(prog="v2d-doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the facts as one json object")
    args = parser.parse_args(argv)
    facts = environment_facts()
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        print("\n".join(fact_lines(facts) + [f"WARNING: {warning}" for warning in facts["warnings"]]))
    if "error" in facts["ffmpeg"]:
        sys.exit(1)
