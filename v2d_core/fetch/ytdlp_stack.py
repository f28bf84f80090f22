"""yt-dlp's YouTube stack as v2d installs it: the JavaScript runtime, the EJS scripts, the plugins.

YouTube's formats need a JavaScript runtime and yt-dlp's challenge scripts (``yt-dlp-ejs``,
from ``yt-dlp[default]``). v2d depends on the ``deno`` wheel, which ships the runtime's
binary, and hands its absolute path to every ``YoutubeDL`` (:func:`js_runtimes`), so it is
found whether or not the venv's ``bin/`` is on ``PATH``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
from dataclasses import dataclass
from typing import Any

import yt_dlp
import yt_dlp.globals
import yt_dlp.plugins
import yt_dlp.version


@dataclass(frozen=True, slots=True, kw_only=True)
class JsRuntime:
    """The JavaScript runtime yt-dlp would use, as yt-dlp itself reports it."""

    name: str
    path: str | None
    version: str | None  # None when it is not found or does not run
    supported: bool  # yt-dlp's own minimum version for the runtime


def deno_path() -> str | None:
    """The ``deno`` binary the ``deno`` wheel installed, or None without the wheel."""
    try:
        import deno
    except ImportError:
        return None
    try:
        return str(deno.find_deno_bin())
    except FileNotFoundError:
        return None


def js_runtimes() -> dict[str, dict[str, Any]]:
    """yt-dlp's ``js_runtimes`` option: deno at the wheel's path (yt-dlp's own search without it)."""
    path = deno_path()
    return {"deno": {"path": path} if path else {}}


def js_runtime() -> JsRuntime:
    """What yt-dlp finds for :func:`js_runtimes`."""
    [(name, config)] = js_runtimes().items()
    runtime_class = yt_dlp.globals.supported_js_runtimes.value[name]
    info = runtime_class(path=config.get("path")).info
    if info is None:
        return JsRuntime(name=name, path=config.get("path"), version=None, supported=False)
    return JsRuntime(name=info.name, path=info.path, version=info.version, supported=bool(info.supported))


def ejs_version() -> str | None:
    """The installed ``yt-dlp-ejs`` (YouTube's challenge solver scripts), or None."""
    try:
        return importlib.metadata.version("yt-dlp-ejs")
    except importlib.metadata.PackageNotFoundError:
        return None


def ytdlp_release_date() -> datetime.date | None:
    """The date in yt-dlp's version (``2026.11.23`` -> 2026-11-23); None for an unusual version."""
    try:
        year, month, day = (int(part) for part in yt_dlp.version.__version__.split(".")[:3])
        return datetime.date(year, month, day)
    except ValueError:
        return None


def ytdlp_plugins() -> dict[str, list[str]]:
    """Installed yt-dlp plugins by kind: extractors, post-processors and PO-token providers."""
    yt_dlp.plugins.load_all_plugins()
    from yt_dlp.extractor.youtube.pot._registry import _pot_providers

    providers = [
        f"{provider.__module__}.{provider.__name__}"
        for provider in _pot_providers.value.values()
        if not provider.__module__.startswith("yt_dlp.")
    ]
    return {
        "extractors": sorted(yt_dlp.globals.plugin_ies.value),
        "postprocessors": sorted(yt_dlp.globals.plugin_pps.value),
        "po_token_providers": sorted(providers),
        "directories": sorted(yt_dlp.plugins.directories()),
    }
