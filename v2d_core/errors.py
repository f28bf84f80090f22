"""The one exception hierarchy of v2d, and where exceptions become sample statuses.

::

    V2DError
    ├── ConfigError          bad option or value; raised before any work starts
    ├── InputError           unreadable url list, missing column
    ├── OutputError          output folder unusable: a file, or another run writes it
    ├── DiskFullError        a disk v2d writes to is full: the whole shard fails, to be redone
    ├── FetchError           -> status "failed_to_download"
    │   ├── UnsupportedUrlError    not http(s), no url at all, or a live stream
    │   ├── RefusedUrlError        host in a private / reserved range (the address guard), or a
    │   │                          stream yt-dlp would hand to a program the guard cannot watch
    │   ├── OptOutError            the server opts out with an X-Robots-Tag directive
    │   ├── HTTPStatusError        4xx / 5xx after retries (transient: 5xx, 429)
    │   ├── FetchTimeoutError      connect/read timeout or stalled body (transient)
    │   ├── ConnectionLostError    reset or closed mid-body (transient)
    │   ├── TooLargeError          body over ``max_file_size``
    │   ├── TooLongError           media longer than ``max_duration``
    │   ├── NotMediaError          empty body, HTML page, unreadable container
    │   └── YtDlpError             yt-dlp's own error, message kept verbatim (transient: network)
    ├── WorseShardError      a shard's new version is worse than the one it would replace (kept)
    ├── SubsampleError       -> status "failed_to_subsample"
    │   ├── FFmpegError            ffmpeg exited non-zero (stderr tail kept)
    │   └── SubsampleTimeoutError  a transform ran past its time limit
    └── DecodeError          the dataloader cannot turn a dataset sample into frames

Statuses are decided in :func:`status_for` and nowhere else; whether a failure is
transient (may go away on a later try, so ``incremental_mode="retry_failed"`` fetches
the row again) in :func:`is_transient`, from the error's class.
"""

from __future__ import annotations

import errno

from v2d_core.redact import redact_text
from v2d_core.sample import Status


class V2DError(Exception):
    """Base of every error v2d raises on purpose."""


class ConfigError(V2DError, ValueError):
    """An option has an unknown name or a bad value."""


class InputError(V2DError, ValueError):
    """The url list cannot be read as asked."""


class OutputError(V2DError):
    """The output folder cannot be written by this run."""


class DiskFullError(V2DError):
    """No space left where v2d writes (``tmp_dir``, the output): not the row's fault, so the shard
    fails as a whole (its old version, if any, stays) and the runner's shard retry redoes it."""


class WorseShardError(V2DError):
    """A shard's new version has a lower success rate than its gate allows; the old one is kept."""


class FetchError(V2DError):
    """A sample could not be fetched."""

    transient = False


class UnsupportedUrlError(FetchError):
    """The url's scheme is not http or https, or it is a live stream."""


class RefusedUrlError(FetchError):
    """The address guard refused the url: its host is in a private or reserved range."""


class OptOutError(FetchError):
    """The server asked, with an X-Robots-Tag directive, not to be used."""


class HTTPStatusError(FetchError):
    """The server answered with an error status; ``retry_after``: the seconds its ``Retry-After`` asked."""

    def __init__(self, message: str, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:  # type: ignore[override]
        return self.status_code >= 500 or self.status_code == 429


class FetchTimeoutError(FetchError):
    """Connecting or reading took longer than allowed."""

    transient = True


class ConnectionLostError(FetchError):
    """The connection broke before the body was complete."""

    transient = True


class TooLargeError(FetchError):
    """The body is larger than the configured maximum."""


class TooLongError(FetchError):
    """The media lasts longer than the configured maximum."""


class NotMediaError(FetchError):
    """The body is not a playable media file."""


class YtDlpError(FetchError):
    """yt-dlp reported an error; its message is kept as is. ``transient`` when what yt-dlp met was a
    timeout, a lost connection, or an HTTP 5xx or 429 (decided from yt-dlp's own exception types)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class SubsampleError(V2DError):
    """A transform of a fetched sample failed."""


class FFmpegError(SubsampleError):
    """ffmpeg exited with an error."""


class SubsampleTimeoutError(SubsampleError):
    """A transform ran past its time limit and was killed."""


class DecodeError(V2DError):
    """The dataloader cannot turn a dataset sample into frames (unreadable video, too few frames)."""


DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def raise_if_disk_full(error: BaseException) -> None:
    """Raise :class:`DiskFullError` if ``error``, or an error it wraps, is a full disk or quota."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            raise DiskFullError(f"no space left to write the shard: {current}") from error
        current = current.__cause__ or current.__context__


def status_for(error: BaseException) -> Status:
    """Map an error raised while handling one sample to that sample's status."""
    if isinstance(error, SubsampleError):
        return Status.FAILED_TO_SUBSAMPLE
    return Status.FAILED_TO_DOWNLOAD


def is_transient(error: BaseException) -> bool:
    """Whether a sample that failed with ``error`` may succeed when fetched again (timeouts, 5xx, resets)."""
    return isinstance(error, FetchError) and error.transient


def describe(error: BaseException) -> str:
    """A one-line error message for a sample row (the class name unless the message says it),
    with credentials masked."""
    message = str(error).strip() or type(error).__name__
    if not isinstance(error, V2DError):
        message = f"{type(error).__name__}: {message}"
    return redact_text(message)
