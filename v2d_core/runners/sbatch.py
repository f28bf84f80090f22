"""Slurm job arrays: the one place that writes an sbatch script, submits it, waits for it and cancels it.

The ``slurm`` distributor (:mod:`v2d_core.runners.slurm`) and ``deploy/slurm/render.py`` (the Dagster
path) both call it. :class:`SlurmArgs` is video2dataset 1.3.0's ``distributor_args`` for
``distributor: slurm``, validated when the config is built.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from v2d_core.errors import ConfigError, V2DError

# Slurm's clients wait for the controller up to MessageTimeout (10 s by default) per call.
CLIENT_TIMEOUT = 120
POLL_START, POLL_MAX = 0.5, 10.0
# squeue calls that may fail in a row (a controller restarting) before waiting gives up
SQUEUE_FAILURES_TOLERATED = 10
ARGS = "distribution.distributor_args"
DIRECTIVE_VALUE = re.compile(r"[^\s\"'`$\\]+")


class SlurmError(V2DError):
    """sbatch, squeue or scancel failed."""


@dataclass(frozen=True, kw_only=True)
class SlurmArgs:
    """``distributor_args`` of ``distributor: slurm``: video2dataset 1.3.0's keys.

    ``n_nodes * tasks_per_node`` array tasks run at once, each with ``cpus_per_task`` CPUs (default:
    ``processes_count``) on one node. ``cache_path`` (a folder every node reads, default
    ``.video2dataset_cache``) holds the sbatch scripts and the tasks' logs. ``timeout`` (seconds,
    None: no limit) bounds the wait for one job array; its unfinished shards then count as failed.
    ``verbose_wait`` prints the array's state at each poll.
    """

    cpus_per_task: int | None = None
    job_name: str = "video2dataset"
    partition: str | None = None
    n_nodes: int = 1
    account: str | None = None
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    nodelist: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    cache_path: str | None = None
    timeout: float | None = None
    verbose_wait: bool = False

    def __post_init__(self) -> None:
        for name in ("n_nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node"):
            value, least = getattr(self, name), 0 if name == "gpus_per_node" else 1
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                raise _arg_error(name, f"an integer >= {least}", value)
        if self.timeout is not None and (isinstance(self.timeout, bool) or not self.timeout > 0):
            raise _arg_error("timeout", "a number of seconds > 0", self.timeout)
        # a flag's JSON (--distributor_args='{"verbose_wait": true}') reaches python-fire as a word
        if str(self.verbose_wait).lower() in ("true", "false"):
            object.__setattr__(self, "verbose_wait", str(self.verbose_wait).lower() == "true")
        else:
            raise _arg_error("verbose_wait", "true or false", self.verbose_wait)
        for name in ("job_name", "partition", "account", "nodelist", "constraint", "exclude"):
            _check_directive_value(f"{ARGS}.{name}", getattr(self, name))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> SlurmArgs:
        """The arguments in ``data``; an unknown key or a bad value raises :class:`ConfigError` naming it."""
        data = data or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{ARGS} must be a mapping, got {data!r}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) in {ARGS} for distributor slurm: {', '.join(unknown)}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        return cls(**data)

    @property
    def parallel_tasks(self) -> int:
        """How many array tasks run at once."""
        return self.n_nodes * self.tasks_per_node


@dataclass(frozen=True, kw_only=True)
class SbatchOptions:
    """The ``#SBATCH`` directives of a job array; ``None`` leaves a setting to the cluster's default."""

    job_name: str
    tasks: int
    max_parallel: int
    output: str
    cpus_per_task: int | None = None
    partition: str | None = None
    account: str | None = None
    gpus_per_node: int = 0
    nodelist: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    mem: str | None = None
    time: str | None = None
    chdir: str | None = None

    def __post_init__(self) -> None:
        if self.tasks < 1 or self.max_parallel < 1:
            raise ValueError(f"a job array needs tasks, max_parallel >= 1: {self.tasks}, {self.max_parallel}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, str):
                _check_directive_value(field.name, value)

    def directives(self) -> list[str]:
        """``--name=value`` for every setting given, in a fixed order."""
        settings: dict[str, Any] = {
            "job-name": self.job_name,
            "array": f"0-{self.tasks - 1}%{self.max_parallel}",
            "nodes": 1,
            "ntasks": 1,
            "cpus-per-task": self.cpus_per_task,
            "gpus-per-node": self.gpus_per_node or None,
            "partition": self.partition,
            "account": self.account,
            "nodelist": self.nodelist,
            "constraint": self.constraint,
            "exclude": self.exclude,
            "mem": self.mem,
            "time": self.time,
            "chdir": self.chdir,
            "output": self.output,
        }
        return [f"--{name}={value}" for name, value in settings.items() if value is not None]


def sbatch_script(options: SbatchOptions, body: str) -> str:
    """A bash script: the directives of ``options``, then ``body``."""
    header = "\n".join(f"#SBATCH {directive}" for directive in options.directives())
    return f"#!/bin/bash\n{header}\n{body}"


def submit(script: str) -> str:
    """Submit the sbatch script at path ``script``; its job id."""
    done = _client(["sbatch", "--parsable", script])
    return done.stdout.strip().split(";")[0]


def wait(
    job_id: str,
    timeout: float | None = None,
    verbose: bool = False,
    on_poll: Callable[[], None] | None = None,
) -> bool:
    """Wait until no task of job ``job_id`` is pending or running; False when ``timeout`` s passed first.

    ``on_poll`` is called at each poll (to report progress); ``verbose`` prints the tasks' states.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    delay, failures = POLL_START, 0
    while True:
        try:
            states = _queued(job_id)
            failures = 0
        except SlurmError:
            failures += 1
            if failures > SQUEUE_FAILURES_TOLERATED:
                raise
            states = ["(squeue failed)"]
        if on_poll is not None:
            on_poll()
        if not states:
            return True
        if verbose:
            print(f"slurm job {job_id}: {', '.join(states)}", file=sys.stderr)
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 2, POLL_MAX)


def cancel(job_id: str) -> None:
    """Cancel every task of job ``job_id`` and wait until none is left."""
    _client(["scancel", job_id])
    wait(job_id)


def _queued(job_id: str) -> list[str]:
    """``task state`` of each task of ``job_id`` still queued (pending, running, completing).

    The user's own jobs are listed rather than asking for ``job_id``: squeue fails on a job id the
    controller has already forgotten.
    """
    done = _client(["squeue", "--me", "--noheader", "--array", "--format=%F %i %T"])
    rows = [line.split() for line in done.stdout.splitlines()]
    return [" ".join(row[1:]) for row in rows if row and row[0] == job_id]


def _client(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    except FileNotFoundError:
        raise SlurmError(f"{command[0]} not found: Slurm's client commands must be on PATH") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{command[0]} did not answer in {CLIENT_TIMEOUT} s") from None
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done


def _check_directive_value(name: str, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not DIRECTIVE_VALUE.fullmatch(value)):
        raise ConfigError(f"{name} must be a word without spaces, quotes, $ or backslashes, got {value!r}")


def _arg_error(name: str, must: str, value: Any) -> ConfigError:
    return ConfigError(f"{ARGS}.{name} must be {must}, got {value!r}")
