"""A shard's work folders under ``tmp_dir``: named by output folder and shard (the name is
:func:`v2d_core.shards.layout.work_prefix`'s), so a later run finds and clears what a killed one left."""

from __future__ import annotations

import shutil
from pathlib import Path

from v2d_core.job import JobConfig
from v2d_core.shards.layout import work_prefix


def job_work_prefix(job: JobConfig, shard_id: int | None = None) -> str:
    """The name prefix of the job's work folders (of one shard's, with ``shard_id``)."""
    return work_prefix(job.output_folder, None if shard_id is None else job.shard_name(shard_id))


def clear_work_folders(job: JobConfig, shard_id: int | None = None) -> None:
    """Delete the work folders killed runs left in ``tmp_dir`` for the job's output folder (or one
    shard of it). Call it only when no run works on them."""
    for stale in Path(job.tmp_dir).glob(f"{job_work_prefix(job, shard_id)}*"):
        shutil.rmtree(stale, ignore_errors=True)
