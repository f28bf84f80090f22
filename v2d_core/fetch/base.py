"""The fetcher interface: a url in, local media files out, or a FetchError."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch produced: modality -> local file, bytes received, source metadata, and
    modality -> media held in memory (``held``: a checked body never written to disk)."""

    streams: dict[str, Path]
    bytes_downloaded: int
    metadata: dict[str, Any] = field(default_factory=dict)
    held: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a checked media file holds."""

    has_video: bool
    has_audio: bool
    duration: float | None = None


class Fetcher(ABC):
    """Fetches one url into ``workdir``. Raises :class:`~v2d_core.errors.FetchError` on failure."""

    @abstractmethod
    def fetch(self, url: str, workdir: Path) -> FetchResult:
        """Download ``url``'s media into files under ``workdir`` (created when a file is written)
        or into memory."""
