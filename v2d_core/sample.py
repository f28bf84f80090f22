"""Records that flow through a shard: one input row, one sample, its status."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from v2d_core.redact import redact_url

# The columns v2d writes after a row's input columns, in the status parquet's order.
STATUS_COLUMNS = ("key", "status", "error_message", "metadata", "error_transient")


class Status(StrEnum):
    """Outcome of one sample, as written in the shard's parquet and stats."""

    SUCCESS = "success"
    FAILED_TO_DOWNLOAD = "failed_to_download"
    FAILED_TO_SUBSAMPLE = "failed_to_subsample"


@dataclass(slots=True)
class Sample:
    """One sample: who it is, its media streams on local disk, and what is known about it.

    ``streams`` maps a modality (``video``, ``audio``) to a local file, ``held`` to media kept
    in memory (a download no transform reads); writers store either under the extension
    ``encode_formats`` gives for that modality. ``extra`` holds the
    additional input columns (and ``clips`` when a clip column was given); ``metadata``
    holds what the pipeline learned (yt-dlp info, probe results, clip span...).
    ``error_transient`` tells of a failed sample whether its failure may go away on a
    later try (:func:`v2d_core.errors.is_transient`).
    """

    key: str
    url: str | None
    caption: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, Path] = field(default_factory=dict)
    held: dict[str, bytes] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.SUCCESS
    error_message: str | None = None
    error_transient: bool = False

    def record(self) -> dict[str, Any]:
        """The sample's json / parquet row: identity (credentials in the url masked), input
        columns, status, metadata."""
        row: dict[str, Any] = {"url": redact_url(self.url), "key": self.key}
        if self.caption is not None:
            row["caption"] = self.caption
        row.update(self.extra)
        row["status"] = str(self.status)
        row["error_message"] = self.error_message
        row.update(self.metadata)
        return row

    def failed(self, status: Status, message: str, *, transient: bool = False) -> Sample:
        """This sample marked failed, without media."""
        return Sample(
            key=self.key,
            url=self.url,
            caption=self.caption,
            extra=self.extra,
            metadata=self.metadata,
            status=status,
            error_message=message,
            error_transient=transient,
        )
