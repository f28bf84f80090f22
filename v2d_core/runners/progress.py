"""A live view of a run: videos/s, bytes/s and failures as workers report their rows.

Workers send a :class:`~v2d_core.runners.events.SampleBatch` of small
:class:`~v2d_core.runners.events.SampleEvent` (one per finished input row) now and then, and a
:class:`~v2d_core.runners.events.ShardEvent` when a shard is committed; :class:`Progress` keeps
running totals, draws a tqdm bar and passes its :class:`~v2d_core.runners.figures.Figures` to
an observer (W&B) now and then.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import NamedTuple, Self

from tqdm import tqdm

from v2d_core.runners.events import SampleEvent, ShardEvent, WorkerEvent
from v2d_core.runners.figures import Figures
from v2d_core.sample import Status
from v2d_core.shards import ShardStats

FiguresObserver = Callable[[Figures], None]
MAX_ERROR_SAMPLES = 10_000
REDRAW_AFTER = 0.2  # seconds a bar may stay behind the rows reported to it


class ErrorSample(NamedTuple):
    """One row that failed with a given error message."""

    key: str
    url: str


class Progress:
    """Running totals of finished rows; a tqdm bar when ``enabled``; ``observer`` sees the figures.

    ``observer`` is called when a shard is committed and at most every ``observe_every``
    seconds in between. Inside ``with``, a bar left behind its rows is redrawn after
    ``REDRAW_AFTER`` seconds, whichever runner reports them.
    """

    def __init__(
        self,
        total: int,
        enabled: bool = True,
        observer: FiguresObserver | None = None,
        observe_every: float = 30.0,
    ) -> None:
        self.error_samples: dict[str, ErrorSample] = {}
        self._totals: Counter[str] = Counter()
        self._per_shard: dict[int, Counter[str]] = {}
        self._lock = threading.Lock()
        self._observer = observer
        self._observe_every = observe_every
        self._started = self._observed = time.monotonic()
        self._bar = tqdm(total=total or None, unit="row", disable=not enabled, dynamic_ncols=True)
        self._closed = threading.Event()
        self._redrawer = threading.Thread(target=self._redraw_until_closed, daemon=True)

    def handle(self, event: WorkerEvent) -> None:
        """Take one event from a worker."""
        if isinstance(event, ShardEvent):
            self.shard_done(event.shard_id)
        else:
            self.samples_done(event.events)

    def samples_done(self, events: tuple[SampleEvent, ...]) -> None:
        """Record finished input rows."""
        with self._lock:
            for event in events:
                counts = {"samples": 1, event.status: 1, "bytes": event.bytes}
                self._totals.update(counts)
                self._per_shard.setdefault(event.shard_id, Counter()).update(counts)
                if event.error is not None and len(self.error_samples) < MAX_ERROR_SAMPLES:
                    self.error_samples.setdefault(event.error, ErrorSample(event.key or "", event.url or ""))
            figures = self._figures()
            self._bar.set_postfix_str(_postfix(figures), refresh=False)
            self._bar.update(len(events))
        if time.monotonic() - self._observed >= self._observe_every:
            self._observe(figures)

    def shard_done(self, shard_id: int) -> None:
        """A shard was committed: its rows stay counted."""
        with self._lock:
            self._per_shard.pop(shard_id, None)
            figures = self._figures()
        self._observe(figures)

    def shard_counted(self, shard_id: int, stats: ShardStats) -> None:
        """Record a whole committed shard from its stats (runners that do not stream rows: Spark)."""
        counts = {
            "samples": stats.count,
            Status.SUCCESS: stats.successes,
            Status.FAILED_TO_DOWNLOAD: stats.failed_to_download,
            Status.FAILED_TO_SUBSAMPLE: stats.failed_to_subsample,
            "bytes": stats.bytes_downloaded,
        }
        with self._lock:
            self._totals.update(counts)
            figures = self._figures()
            self._bar.set_postfix_str(_postfix(figures), refresh=False)
            self._bar.update(counts["samples"])
        self._observe(figures)

    def shard_failed(self, shard_id: int) -> None:
        """Take back the rows of a shard that failed as a whole; its retry counts them again."""
        with self._lock:
            counts = self._per_shard.pop(shard_id, Counter())
            self._totals.subtract(counts)
            self._bar.set_postfix_str(_postfix(self._figures()), refresh=False)
            self._bar.update(-counts["samples"])

    def redraw(self) -> None:
        """Draw the bar if it shows fewer rows than are done: tqdm skips the draw of an update
        that comes within ``mininterval`` of its last draw or is smaller than its learned
        ``miniters``, and with no further update the bar would stay behind until the next
        report (the next shard, on Spark and Slurm)."""
        with self._lock:
            bar = self._bar
            if not bar.disable and bar.n != bar.last_print_n:
                bar.refresh()
                bar.last_print_n, bar.last_print_t = bar.n, time.time()  # tqdm's clock

    def _redraw_until_closed(self) -> None:
        while not self._closed.wait(REDRAW_AFTER):
            self.redraw()

    def _figures(self) -> Figures:
        """The figures so far (no error messages: those come from the shards' results)."""
        totals = self._totals
        return Figures(
            samples=totals["samples"],
            successes=totals[Status.SUCCESS],
            failed_to_download=totals[Status.FAILED_TO_DOWNLOAD],
            failed_to_subsample=totals[Status.FAILED_TO_SUBSAMPLE],
            bytes=totals["bytes"],
            seconds=time.monotonic() - self._started,
        )

    def _observe(self, figures: Figures) -> None:
        self._observed = time.monotonic()
        if self._observer is not None:
            self._observer(figures)

    def __enter__(self) -> Self:
        if not self._bar.disable:
            self._redrawer.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed.set()
        if self._redrawer.is_alive():
            self._redrawer.join()
        self._bar.close()


def _postfix(figures: Figures) -> str:
    rate = tqdm.format_sizeof(figures.bytes_per_second, divisor=1000)
    return f"videos/s={figures.videos_per_second:.1f}, bytes/s={rate}B, failed={figures.failures}"
