"""Which ffmpeg binary v2d runs, and its version: one choice per process, made here only.

v2d runs an ffmpeg whose behaviour its test suite knows. Candidates, in order:

1. ``V2D_FFMPEG``, when set: it must qualify, else every run stops with an error saying why
   (an explicit choice is never ignored silently);
2. the ``ffmpeg`` on ``PATH``, when it qualifies (a system build, e.g. one with hardware encoders);
3. the build the ``imageio-ffmpeg`` wheel ships (the one the suite runs on).

A binary qualifies when its release is at least :data:`MINIMUM_VERSION` and it has every
encoder in :data:`ENCODERS` (the default encoders of the containers v2d writes). An older
``PATH`` ffmpeg (Debian 12's 5.1, say) is passed over for the bundled build, and
:attr:`FFmpegBinary.note` says so; ``v2d-doctor`` and each run's log report the choice.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from v2d_core.errors import ConfigError

MINIMUM_VERSION = (9, 0)
ENCODERS = frozenset({"libx264", "aac", "libvpx-vp9", "libopus", "libmp3lame", "libvorbis", "mjpeg"})
VERSION_LINE = re.compile(r"^ffmpeg version n?(?P<version>\S+)")
RELEASE = re.compile(r"^(\d+)\.(\d+)")
ENCODER_LINE = re.compile(r"^ [VAS][A-Z.]{5} (\w[\w-]*)")
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FFmpegBinary:
    """An ffmpeg executable and what it reports about itself."""

    path: str
    version: str  # as ffmpeg prints it, e.g. "9.0.2-17-g2a571b6068-20260930" or "5.1.8-0+deb12u1"
    release: tuple[int, int] | None  # (major, minor); None for a build without a release number
    encoders: frozenset[str] = field(repr=False)
    source: str  # "V2D_FFMPEG", "PATH" or "imageio-ffmpeg"
    note: str = ""  # why a candidate before this one was passed over

    @property
    def missing_encoders(self) -> list[str]:
        """Encoders v2d's outputs use that this build lacks."""
        return sorted(ENCODERS - self.encoders)

    @property
    def problem(self) -> str | None:
        """Why this binary does not qualify, or None when it does."""
        minimum = ".".join(map(str, MINIMUM_VERSION))
        if self.release is None:
            return f"{self.path} reports version {self.version!r}, not a release number (need >= {minimum})"
        if self.release < MINIMUM_VERSION:
            return f"{self.path} is ffmpeg {self.version}, older than {minimum}"
        if self.missing_encoders:
            return f"{self.path} lacks the encoder(s) {', '.join(self.missing_encoders)}"
        return None


def probe(path: str, source: str) -> FFmpegBinary:
    """Run ``path -version`` and ``path -encoders``; a ConfigError when it is not a working ffmpeg.

    What a working binary reported is kept in :func:`probe_cache_file`, keyed by the file's
    identity (size, times, inode), so later processes skip the two runs until the file changes.
    """
    identity = _identity(path)
    cached = _read_cache().get(identity) if identity else None
    if cached is not None:
        version, encoders = cached["version"], set(cached["encoders"])
    else:
        version, encoders = _run_probe(path, source)
        if identity:
            _write_cache(identity, {"version": version, "encoders": sorted(encoders)})
    release = RELEASE.match(version)
    return FFmpegBinary(
        path=path,
        version=version,
        release=(int(release[1]), int(release[2])) if release else None,
        encoders=frozenset(encoders),
        source=source,
    )


def probe_cache_file() -> Path:
    """Where probe results are kept: ``$XDG_CACHE_HOME/v2d`` (``~/.cache/v2d`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "v2d" / "ffmpeg-probes.json"


def _run_probe(path: str, source: str) -> tuple[str, set[str]]:
    try:
        version_out = _run(path, "-version")
        encoders_out = _run(path, "-hide_banner", "-encoders")
    except (OSError, subprocess.SubprocessError) as error:
        raise ConfigError(f"{source} ffmpeg {path} does not run: {error}") from None
    match = VERSION_LINE.match(version_out)
    if match is None:
        raise ConfigError(f"{source} ffmpeg {path} does not print an ffmpeg version line")
    encoders = {m[1] for line in encoders_out.splitlines() if (m := ENCODER_LINE.match(line))}
    return match["version"], encoders


def _identity(path: str) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{os.path.realpath(path)}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}"


def _read_cache() -> dict[str, dict]:
    try:
        entries = json.loads(probe_cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_cache(identity: str, entry: dict) -> None:
    """Add ``entry``, replacing what an older file at the same path reported (best effort: a
    read-only home only means probing again next time)."""
    cache = probe_cache_file()
    path = identity.rsplit(":", 4)[0]
    entries = {key: value for key, value in _read_cache().items() if key.rsplit(":", 4)[0] != path}
    entries[identity] = entry
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=cache.parent, delete=False, suffix=".tmp") as handle:
            json.dump(entries, handle)
        os.replace(handle.name, cache)
    except OSError:
        return


@functools.cache
def resolve_ffmpeg() -> FFmpegBinary:
    """The ffmpeg v2d runs (see the module docstring); a ConfigError when ``V2D_FFMPEG`` does not qualify."""
    explicit = os.environ.get("V2D_FFMPEG")
    if explicit:
        chosen = probe(explicit, "V2D_FFMPEG")
        if chosen.problem:
            raise ConfigError(
                f"V2D_FFMPEG: {chosen.problem}; unset V2D_FFMPEG to use the ffmpeg the imageio-ffmpeg "
                "wheel ships"
            )
        return chosen
    note = ""
    on_path = shutil.which("ffmpeg")
    if on_path:
        try:
            candidate = probe(os.path.realpath(on_path), "PATH")
        except ConfigError as error:  # a broken ffmpeg on PATH: the bundled one still works
            note = f"{error}; using the bundled build"
        else:
            if candidate.problem is None:
                return candidate
            note = f"PATH's {candidate.problem}; using the bundled build"
    import imageio_ffmpeg

    return dataclasses.replace(probe(imageio_ffmpeg.get_ffmpeg_exe(), "imageio-ffmpeg"), note=note)


def ffmpeg_exe() -> str:
    """Absolute path of the ffmpeg to run."""
    return resolve_ffmpeg().path


def _run(path: str, *args: str) -> str:
    done = subprocess.run(
        [path, *args], capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT, check=True
    )
    return done.stdout
