"""What a finished run did, as figures, as the lines the CLI prints, and as error rows (W&B's table)."""

from __future__ import annotations

from typing import NamedTuple

from tqdm import tqdm

from v2d_core.runners.figures import TOP_ERRORS, Figures
from v2d_core.runners.run import RunSummary
from v2d_core.text import terminal_safe

MESSAGE_WIDTH = 200


class ErrorRow(NamedTuple):
    """One distinct error message, how many rows failed with it, and one of those rows."""

    error_message: str
    rows: int
    sample_key: str
    sample_url: str


def run_figures(summary: RunSummary) -> Figures:
    """The figures over every shard the run finished, over the run's wall time."""
    return Figures.total((Figures.from_stats(result.stats()) for result in summary.results), summary.seconds)


def shard_counts(summary: RunSummary) -> dict[str, int]:
    """Shards finished by this run, skipped (done before it) and failed after their retries."""
    return {
        "shards_done": len(summary.results),
        "shards_skipped": len(summary.skipped_shards),
        "shards_failed": len(summary.failed_shards),
    }


def error_rows(summary: RunSummary, limit: int | None = None) -> list[ErrorRow]:
    """The run's distinct error messages, most frequent first, each with a row that failed so."""
    rows = []
    for message, count in run_figures(summary).top_errors(limit):
        sample = summary.error_samples.get(message)
        rows.append(ErrorRow(message, count, sample.key if sample else "", sample.url if sample else ""))
    return rows


def summary_lines(summary: RunSummary) -> list[str]:
    """The closing lines a run prints: shards, rows by status, bytes, seconds, rate, top errors."""
    figures = run_figures(summary)
    shards = shard_counts(summary)
    lines = [
        f"shards: {shards['shards_done']} done, {shards['shards_skipped']} skipped (done before), "
        f"{shards['shards_failed']} failed",
        f"samples: {figures.samples}, success: {figures.successes}, "
        + ", ".join(f"{status}: {count}" for status, count in figures.failures_by_status.items()),
        f"bytes: {figures.bytes} ({tqdm.format_sizeof(figures.bytes, divisor=1000)}B), "
        f"seconds: {figures.seconds:.1f}, videos/s: {figures.videos_per_second:.2f}",
    ]
    if figures.errors:
        lines.append(f"top errors (of {len(figures.errors)} distinct):")
        lines += [f"{count:>8}  {_one_line(message)}" for message, count in figures.top_errors(TOP_ERRORS)]
    for shard_id, error in sorted(summary.failed_shards.items()):
        lines.append(f"shard {shard_id} failed after retries: {error}")
    return [terminal_safe(line) for line in lines]


def _one_line(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= MESSAGE_WIDTH else flat[: MESSAGE_WIDTH - 3] + "..."
