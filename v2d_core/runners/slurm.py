"""The slurm distributor: a job's shards as an sbatch job array, submitted and waited for.

Each round of :func:`~v2d_core.runners.run.retry_rounds` is one job array in a fresh folder under
``cache_path``: ``round.pkl`` (the job and its shards), ``v2d.sbatch``, ``logs/`` (one file per
task) and ``outcomes/`` (one file per shard, written by the task that ran it). Array task ``i`` of
``n`` runs shards ``i, i + n, ...`` on a local process pool (``python -m v2d_core.runners.slurm``), with
the submitting environment (sbatch exports it). Nodes must reach ``output_folder`` and
``cache_path``: a shared filesystem or object storage.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.runners.local import run_shards
from v2d_core.runners.progress import FiguresObserver, Progress
from v2d_core.runners.run import RunSummary, portable_job, retry_rounds
from v2d_core.runners.sbatch import SbatchOptions, SlurmArgs, cancel, sbatch_script, submit, wait
from v2d_core.shards.result import ShardResult

DEFAULT_CACHE = ".video2dataset_cache"
Outcome = ShardResult | str


@dataclass(frozen=True, slots=True)
class Round:
    """What the tasks of one job array read: the job, its shards and how many tasks share them."""

    job: JobConfig
    specs: list[ShardSpec]
    tasks: int

    def specs_of(self, task: int) -> list[ShardSpec]:
        return self.specs[task :: self.tasks]


def run_shards_on_slurm(
    specs: list[ShardSpec],
    job: JobConfig,
    show_progress: bool = False,
    observer: FiguresObserver | None = None,
) -> RunSummary:
    """Run ``specs`` as Slurm array tasks; retry failing shards as ``run_shards``, one array per round."""
    job = portable_job(job)
    args = SlurmArgs.from_mapping(job.config.distribution.distributor_args)
    cache = Path(args.cache_path or DEFAULT_CACHE).resolve()
    summary = RunSummary()
    total = sum(spec.row_count for spec in specs)
    with Progress(total=total, enabled=show_progress, observer=observer) as progress:
        attempt = partial(_run_round, args, cache, job, summary, progress)
        summary.failed_shards = retry_rounds(specs, job.max_shard_retry, attempt)
    return summary


def _run_round(
    args: SlurmArgs,
    cache: Path,
    job: JobConfig,
    summary: RunSummary,
    progress: Progress,
    specs: list[ShardSpec],
) -> dict[int, str]:
    """One job array over ``specs``; shard id -> error of those that did not finish."""
    folder = cache / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    (folder / "outcomes").mkdir(parents=True)
    (folder / "logs").mkdir()
    tasks = min(len(specs), args.parallel_tasks)
    with (folder / "round.pkl").open("wb") as handle:
        pickle.dump(Round(job=job, specs=specs, tasks=tasks), handle)
    script = folder / "v2d.sbatch"
    script.write_text(sbatch_script(_options(args, job, folder, tasks), _body(folder)))
    counted: set[int] = set()

    def count_finished() -> None:
        for spec in specs:
            if spec.shard_id not in counted and isinstance(outcome := _outcome(folder, spec), ShardResult):
                counted.add(spec.shard_id)
                progress.shard_counted(spec.shard_id, outcome.stats())

    try:
        job_id = submit(str(script))
        finished = _wait_or_cancel(job_id, args, count_finished)
    finally:
        (folder / "round.pkl").unlink()
    failures = {}
    for spec in specs:
        outcome = _outcome(folder, spec)
        if isinstance(outcome, ShardResult):
            summary.results.append(outcome)
        else:
            failures[spec.shard_id] = outcome or _lost(job_id, finished, args.timeout, folder)
            progress.shard_failed(spec.shard_id)
    return failures


def _wait_or_cancel(job_id: str, args: SlurmArgs, on_poll: Callable[[], None]) -> bool:
    """Wait for the array; cancel it after ``timeout`` (then False) or when interrupted."""
    try:
        finished = wait(job_id, args.timeout, args.verbose_wait, on_poll=on_poll)
    except BaseException:  # interrupted: the array must not outlive the run that owns it
        cancel(job_id)
        raise
    if not finished:
        cancel(job_id)
    return finished


def _options(args: SlurmArgs, job: JobConfig, folder: Path, tasks: int) -> SbatchOptions:
    return SbatchOptions(
        job_name=args.job_name,
        tasks=tasks,
        max_parallel=tasks,
        output=str(folder / "logs" / "%A_%a.out"),
        cpus_per_task=args.cpus_per_task or job.config.distribution.processes_count,
        partition=args.partition,
        account=args.account,
        gpus_per_node=args.gpus_per_node,
        nodelist=args.nodelist,
        constraint=args.constraint,
        exclude=args.exclude,
        chdir=os.getcwd(),
    )


def _body(folder: Path) -> str:
    return f"exec {shlex.quote(sys.executable)} -m v2d_core.runners.slurm {shlex.quote(str(folder))}\n"


def _lost(job_id: str, finished: bool, timeout: float | None, folder: Path) -> str:
    if not finished:
        return f"Slurm job {job_id} was cancelled after the timeout of {timeout} s"
    return f"its Slurm task ended without finishing it (job {job_id}; logs in {folder / 'logs'})"


def _outcome(folder: Path, spec: ShardSpec) -> Outcome | None:
    """What the task of ``spec`` recorded: its result or its error; None before (or without) that."""
    path = folder / "outcomes" / f"{spec.shard_id}.pkl"
    if not path.exists():
        return None
    with path.open("rb") as handle:
        outcome: Outcome = pickle.load(handle)
    return outcome


def run_task(folder: Path, task: int) -> None:
    """Array task ``task``: run its shards on a local pool; record each shard's result or error.

    Retries are the submitting run's (``max_shard_retry``), so the pool makes one attempt.
    """
    with (folder / "round.pkl").open("rb") as handle:
        round_: Round = pickle.load(handle)
    specs = round_.specs_of(task)
    job = dataclasses.replace(round_.job, max_shard_retry=0)
    summary = run_shards(specs, job)
    outcomes: dict[int, Outcome] = {result.shard_id: result for result in summary.results}
    outcomes.update(summary.failed_shards)
    for shard_id, outcome in outcomes.items():
        final = folder / "outcomes" / f"{shard_id}.pkl"
        partial_path = final.with_suffix(".pkl.part")
        with partial_path.open("wb") as handle:
            pickle.dump(outcome, handle)
        partial_path.rename(final)  # the submitting run never reads half a file


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m v2d_core.runners.slurm FOLDER``, as the array's sbatch script runs it."""
    [folder] = sys.argv[1:] if argv is None else argv
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task is None:
        sys.exit("v2d_core.runners.slurm: run by sbatch only (SLURM_ARRAY_TASK_ID is not set)")
    run_task(Path(folder), int(task))


if __name__ == "__main__":
    main()
