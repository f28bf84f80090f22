"""``captions_are_subtitles``: subtitle lines become the clips, and each clip's caption.

Subtitles come from yt-dlp as ``metadata["yt_meta_dict"]["subtitles"]``: either a list
of ``{"start", "end", "lines"}`` or a mapping language -> such a list (the first
language is used). Times are ``HH:MM:SS.fff`` text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.clips import Span, to_seconds


def subtitle_lines(metadata: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The subtitle lines of the first language, or an empty list."""
    subtitles = (metadata.get("yt_meta_dict") or {}).get("subtitles")
    if isinstance(subtitles, Mapping):
        subtitles = next(iter(subtitles.values()), None)
    if not isinstance(subtitles, list):
        return []
    return [line for line in subtitles if isinstance(line, Mapping) and "start" in line and "end" in line]


def _text(line: Mapping[str, Any]) -> str:
    lines = line.get("lines", "")
    if isinstance(lines, Mapping):  # {lang: [lines]}
        lines = next(iter(lines.values()), [])
    return " ".join(lines) if isinstance(lines, list) else str(lines)


def caption_for(metadata: Mapping[str, Any], span: Span) -> str | None:
    """The text of the subtitle lines overlapping ``span``, joined by spaces; None when none do."""
    texts = [
        _text(line)
        for line in subtitle_lines(metadata)
        if max(span.start, to_seconds(line["start"])) < min(span.end, to_seconds(line["end"]))
    ]
    return " ".join(text for text in texts if text) or None


class SubtitleClipsSubsampler(Subsampler):
    """Sets ``metadata["clips"]`` to the spans of the sample's subtitle lines."""

    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        lines = subtitle_lines(sample.metadata)
        if not lines:
            raise SubsampleError("captions_are_subtitles is on but the sample has no subtitles")
        sample.metadata["clips"] = [[line["start"], line["end"]] for line in lines]
        return [sample]
