"""Render ``v2d_array.sbatch.in`` for one stage of one dataset: an sbatch array over its shards.

    python deploy/slurm/render.py --dataset clips --stage download --shards-per-task 8 > clips.sbatch
    sbatch clips.sbatch
    # or: render, submit and wait for the array to end, in one step
    python deploy/slurm/render.py --dataset clips --stage download --submit --wait

The shard ids come from the dataset's plan (materialize ``{dataset}/shard_plan`` first). The
``#SBATCH`` directives, the submission and the wait are ``v2d_core.runners.sbatch``'s, as for
``distributor: slurm``. Every ``${V2D_...}`` placeholder of the template is filled here;
``${SLURM_...}`` and the script's own shell variables are left for bash.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from v2d_core.errors import V2DError
from v2d_core.runners.sbatch import SbatchOptions, sbatch_script, submit, wait
from v2d_dagster.plan import read_plan
from v2d_dagster.spec import DatasetSpec, load_datasets

TEMPLATE = Path(__file__).with_name("v2d_array.sbatch.in")
PLACEHOLDER = re.compile(r"\$\{(V2D_[A-Z_]+)\}")
UNSAFE = re.compile(r'["$`\\\n]')  # values land inside double quotes in bash


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``${V2D_NAME}`` replaced by ``values[NAME]``; every one must be given."""
    missing = sorted(set(PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise ValueError(f"no value for placeholder(s): {', '.join(missing)}")
    unsafe = sorted(name for name, value in values.items() if UNSAFE.search(value))
    if unsafe:
        raise ValueError(f'values may not hold ", $, `, \\ or newlines: {", ".join(unsafe)}')
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def template_values(args: argparse.Namespace, dataset: DatasetSpec) -> tuple[SbatchOptions, dict[str, str]]:
    """The array's directives and the placeholders' values for ``args.stage`` of ``dataset``."""
    if args.stage not in dataset.stages:
        raise ValueError(f"dataset {dataset.name} has no stage {args.stage!r}: {', '.join(dataset.stages)}")
    stage = dataset.stages[args.stage]
    shards = sorted(read_plan(dataset.shard_input_dir).shards)
    if not shards:
        raise ValueError(f"{dataset.name}'s plan has no shards")
    per_task = args.shards_per_task or stage.shards_per_run
    cpus = args.cpus or dataset.job(args.stage).config.distribution.processes_count
    options = SbatchOptions(
        job_name=f"v2d-{dataset.name}-{args.stage}",
        tasks=(len(shards) + per_task - 1) // per_task,
        max_parallel=args.max_parallel,
        cpus_per_task=cpus,
        partition=args.partition,
        mem=args.mem,
        time=args.time,
        output=f"{Path(args.log_dir).resolve()}/%x-%A_%a.out",
    )
    values = {
        "V2D_DATASET": dataset.name,
        "V2D_STAGE": args.stage,
        "V2D_OP": f"{dataset.name}__{args.stage}",
        "V2D_SHARD_IDS": " ".join(shards),
        "V2D_SHARDS_PER_TASK": str(per_task),
        "V2D_CPUS": str(cpus),
        "V2D_WORKDIR": str(Path(args.workdir).resolve()),
        "V2D_DAGSTER_HOME": str(Path(args.dagster_home).resolve()),
        "V2D_DATASETS_DIR": str(Path(args.datasets_dir).resolve()),
        "V2D_PYTHON": args.python,
    }
    return options, values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, help="the dataset's name")
    parser.add_argument("--stage", default="download")
    parser.add_argument("--shards-per-task", type=int, help="default: the stage's shards_per_run")
    parser.add_argument("--cpus", type=int, help="CPUs per task = processes; default: processes_count")
    parser.add_argument("--mem", default="8G", help="memory per task (sbatch --mem)")
    parser.add_argument("--time", default="24:00:00", help="time limit per task (sbatch --time)")
    parser.add_argument("--max-parallel", type=int, default=50, help="array tasks running at once")
    parser.add_argument("--partition", help="sbatch --partition; default: the cluster's")
    parser.add_argument("--datasets-dir", default=os.environ.get("V2D_DATASETS_DIR", "datasets"))
    parser.add_argument("--dagster-home", default=os.environ.get("DAGSTER_HOME"))
    parser.add_argument("--workdir", default=".", help="where the tasks run (the project folder)")
    parser.add_argument("--log-dir", default=".", help="where Slurm writes each task's output")
    parser.add_argument("--python", default=sys.executable, help="the interpreter v2d is installed in")
    parser.add_argument(
        "--submit", action="store_true", help="write the script to the log dir and submit it with sbatch"
    )
    parser.add_argument("--wait", action="store_true", help="with --submit: return when the array has ended")
    args = parser.parse_args(argv)
    if not args.dagster_home:
        parser.error("--dagster-home (or $DAGSTER_HOME) is required: the Dagster instance the tasks share")
    if args.shards_per_task is not None and args.shards_per_task < 1:
        parser.error("--shards-per-task must be >= 1")
    if args.wait and not args.submit:
        parser.error("--wait needs --submit")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        datasets = {dataset.name: dataset for dataset in load_datasets(args.datasets_dir)}
        if args.dataset not in datasets:
            raise ValueError(f"no dataset {args.dataset!r} in {args.datasets_dir}: {', '.join(datasets)}")
        options, values = template_values(args, datasets[args.dataset])
        script = sbatch_script(options, render(TEMPLATE.read_text(), values))
        if not args.submit:
            sys.stdout.write(script)
            return 0
        path = Path(args.log_dir).resolve() / f"{options.job_name}.sbatch"
        path.write_text(script)
        job_id = submit(str(path))
        print(f"submitted {path} as Slurm job {job_id}", flush=True)
        if args.wait:
            wait(job_id)
            print(f"Slurm job {job_id} has ended: see its runs in Dagster and its logs in {args.log_dir}")
    except (V2DError, ValueError) as error:
        print(f"render.py: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
