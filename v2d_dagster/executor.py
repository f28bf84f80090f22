"""The executor every v2d run uses, chosen by ``$V2D_EXECUTOR`` when the definitions load.

- unset or ``in_process``: the run's one step (a batch of shards) runs in the run's own process;
- ``multiprocess``: each step in a child process of the run;
- ``k8s``: each step in its own Kubernetes Job (dagster-k8s's ``k8s_job_executor``), sized by
  the stage's ``dagster-k8s/config`` tag (:mod:`v2d_dagster.k8s`). It needs the instance's
  ``K8sRunLauncher``; deploy/README.md sets it up.

The variable must be the same wherever the definitions load: the code server, the run worker
and the step workers (the Helm values set it on the user-code deployment, whose environment
dagster-k8s passes on to the pods it launches).
"""

from __future__ import annotations

import os

import dagster as dg

from v2d_core.errors import ConfigError

EXECUTOR_ENV = "V2D_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s")


def select_executor(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor named by ``name``, else by ``$V2D_EXECUTOR``, else the in-process one."""
    choice = (name if name is not None else os.environ.get(EXECUTOR_ENV, "")).strip() or "in_process"
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "multiprocess":
        return dg.multiprocess_executor
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor  # imports the kubernetes client: only when asked

        return k8s_job_executor
    raise ConfigError(f"{EXECUTOR_ENV}={choice!r} is not an executor; choose from {', '.join(EXECUTORS)}")
