"""A stage asset partitioned by shard: keys in, ``process_shard`` / ``run_shards`` called, metadata out.

One run handles one partition (``process_shard`` in the run's process; with the run config
``retry_failed``, a written shard only gets its transient failures fetched again) or a batch of
partitions from a backfill (``run_shards`` on a local process pool), so a backfill costs
one run per ``shards_per_run`` shards. Each partition gets its own metadata and its own
check results. A batch with failing shards fails the step; Dagster's RetryPolicy re-runs
it, and the retry skips the shards this run already finished.

Where a stage's shards come from is the one thing stages differ in: a
:data:`ShardResolver` turns partition keys into the core's :class:`ShardSpec` (the plan's
input files, or the tars an upstream stage wrote). With the dataset's automation on, a
shard materializes by itself when its upstream shard lands (``AutomationCondition.eager``).
"""

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from v2d_core.errors import ConfigError, InputError
from v2d_core.job import JobConfig
from v2d_core.redact import redact_text
from v2d_core.retry import process_or_retry
from v2d_core.run import run_shards
from v2d_core.sharding import ShardSpec
from v2d_core.shards import ShardLayout, ShardStats
from v2d_core.shards.reader import ShardReader
from v2d_dagster.assets.shard_plan import shard_inputs_key
from v2d_dagster.k8s import k8s_config_tags
from v2d_dagster.metadata import environment_metadata, shard_metadata
from v2d_dagster.plan import read_plan, upstream_tar_specs
from v2d_dagster.shard_checks import CHECK_NAMES, shard_check_evaluations
from v2d_dagster.spec import DatasetSpec, stage_version

# (job, partition keys) -> partition key -> the core's unit of work; raises InputError.
ShardResolver = Callable[[JobConfig, Sequence[str]], dict[str, ShardSpec]]

CHECK_DESCRIPTIONS = {
    "readable": "The shard's parquet and data file open, and the data holds exactly its successful samples.",
    "row_count_matches_input": "The shard's parquet has one row per input row.",
    "unique_keys": "No sample key appears twice in the shard's parquet.",
    "success_rate": "Successful samples / rows is at least the stage's min_success_rate.",
}


class ShardRunConfig(dg.Config):
    """Launch-time knobs, not in code_version: how fast a run goes, and whether it only retries."""

    processes_count: int | None = Field(default=None, description="Shards processed at once in a batch run.")
    thread_count: int | None = Field(default=None, description="Download threads per shard.")
    retry_failed: bool = Field(
        default=False,
        description="Shards already written only get their transiently failed rows (timeouts, 5xx, "
        "resets) fetched again; the other rows are kept as they are.",
    )

    def apply(self, job: JobConfig) -> JobConfig:
        if self.retry_failed:
            job = dataclasses.replace(job, incremental_mode="retry_failed")
        changes = {
            name: value
            for name, value in self.model_dump(exclude={"retry_failed"}).items()
            if value is not None
        }
        if not changes:
            return job
        distribution = dataclasses.replace(job.config.distribution, **changes)
        return dataclasses.replace(job, config=dataclasses.replace(job.config, distribution=distribution))


def stage_key(dataset: DatasetSpec, stage: str) -> dg.AssetKey:
    return dg.AssetKey([dataset.name, stage])


def plan_resolver(dataset: DatasetSpec) -> ShardResolver:
    """Shards from the dataset's plan: its per-shard input rows, or its input tars."""

    def resolve(job: JobConfig, partitions: Sequence[str]) -> dict[str, ShardSpec]:
        plan = read_plan(dataset.shard_input_dir)
        return {partition: plan.spec(job, dataset.shard_input_dir, partition) for partition in partitions}

    return resolve


def upstream_resolver(dataset: DatasetSpec, upstream_stage: str) -> ShardResolver:
    """Shards from the tars ``upstream_stage`` wrote, same ids."""
    folder = dataset.stage_folder(upstream_stage)
    return lambda job, partitions: upstream_tar_specs(folder, list(partitions))


def build_shard_stage(
    dataset: DatasetSpec,
    stage: str,
    upstream: dg.AssetKey,
    partitions: dg.PartitionsDefinition,
    resolve: ShardResolver,
) -> dg.AssetsDefinition:
    """The asset ``{dataset}/{stage}``: one partition per shard, checks per partition."""
    settings = dataset.stages[stage]
    job = dataset.job(stage)
    key = stage_key(dataset, stage)
    shown_folder = redact_text(job.output_folder)
    with warnings.catch_warnings():  # partitioned check specs are a Dagster preview feature
        warnings.simplefilter("ignore", dg.PreviewWarning)
        check_specs = [
            dg.AssetCheckSpec(
                name, asset=key, description=CHECK_DESCRIPTIONS[name], partitions_def=partitions
            )
            for name in CHECK_NAMES
        ]
    spec = dg.AssetSpec(
        key,
        deps=[upstream],
        description=f"{dataset.name}: the {stage} stage, one partition per shard, in {shown_folder}.",
        group_name=dataset.name,
        code_version=stage_version(job),
        kinds={"video", settings.output_format},
        metadata={"output_folder": shown_folder, "output_format": job.output_format},
        tags={"v2d/stage": stage},
        # Runs only while the dataset's automation sensor runs (``automation: true``).
        automation_condition=dg.AutomationCondition.eager(),
    )

    @dg.multi_asset(
        name=f"{dataset.name}__{stage}",
        specs=[spec],
        check_specs=check_specs,
        partitions_def=partitions,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.multi_run(settings.shards_per_run),
        retry_policy=dg.RetryPolicy(
            max_retries=settings.max_retries, delay=1, backoff=dg.Backoff.EXPONENTIAL
        ),
        # dagster-k8s sizes the step's pod from these (V2D_EXECUTOR=k8s: one pod per step).
        op_tags={"v2d/dataset": dataset.name, "v2d/stage": stage, **k8s_config_tags(settings.resources)},
    )
    def shard_stage(context: dg.AssetExecutionContext, config: ShardRunConfig) -> Iterator[Any]:
        run_job = config.apply(job)
        specs = shard_specs(resolve, run_job, context.partition_keys)
        if key in context.selected_asset_keys:
            environment = environment_metadata(context, run_job.config.reading)
            for partition, stats in run_stage(context, specs, run_job).items():
                context.add_asset_metadata(
                    {**shard_metadata(stats, _data_path(run_job, partition)), "environment": environment},
                    asset_key=key,
                    partition_key=partition,
                )
            yield dg.MaterializeResult(asset_key=key)
        yield from evaluate_checks(context, key, specs, run_job, settings.min_success_rate)

    return shard_stage


def shard_specs(resolve: ShardResolver, job: JobConfig, partitions: Sequence[str]) -> dict[str, ShardSpec]:
    """Partition key -> the core's unit of work."""
    try:
        return resolve(job, partitions)
    except InputError as error:  # no plan, or a shard it does not have: retrying will not help
        raise dg.Failure(description=redact_text(str(error)), allow_retries=False) from None


def run_stage(
    context: dg.AssetExecutionContext, specs: Mapping[str, ShardSpec], job: JobConfig
) -> dict[str, ShardStats]:
    """Process the shards of ``specs`` (partition key -> spec); their stats by partition key."""
    finished = _finished_in_this_run(context, specs, job) if context.retry_number else {}
    todo = [spec for partition, spec in specs.items() if partition not in finished]
    if finished:
        context.log.info(f"retry {context.retry_number}: {len(finished)} shard(s) already done in this run")
    try:
        if len(todo) <= 1:  # one shard: in this process, no pool to start
            results, failures = [process_or_retry(spec, job) for spec in todo], {}
        else:
            summary = run_shards(todo, job)
            results, failures = summary.results, summary.failed_shards
    except (ConfigError, InputError) as error:  # the message says it all; no traceback to leak secrets
        raise dg.Failure(description=redact_text(str(error)), allow_retries=False) from None
    if failures:
        lines = [f"{job.shard_name(shard_id)}: {error}" for shard_id, error in sorted(failures.items())]
        raise dg.Failure(
            description=f"{len(failures)} of {len(specs)} shard(s) failed:\n" + "\n".join(lines),
            metadata={"failed_shards": ", ".join(job.shard_name(s) for s in sorted(failures))},
        )
    stats = dict(finished)
    stats.update({job.shard_name(result.shard_id): result.stats() for result in results})
    return stats


def evaluate_checks(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    specs: Mapping[str, ShardSpec],
    job: JobConfig,
    min_success_rate: float,
) -> Iterator[dg.Output]:
    """Log each selected check's verdict for each partition; then the checks' (empty) step outputs."""
    selected = {check.name for check in context.selected_asset_check_keys if check.asset_key == key}
    if not selected:
        return
    for partition, spec in specs.items():
        for evaluation in shard_check_evaluations(key, partition, spec, job, min_success_rate):
            if evaluation.check_name in selected:
                context.log_event(evaluation)
    for name in sorted(selected):
        yield dg.Output(None, output_name=_check_output_name(context, dg.AssetCheckKey(key, name)))


def _check_output_name(context: dg.AssetExecutionContext, check_key: dg.AssetCheckKey) -> str:
    return context.assets_def.get_output_name_for_asset_check_key(check_key)


def _finished_in_this_run(
    context: dg.AssetExecutionContext, specs: Mapping[str, ShardSpec], job: JobConfig
) -> dict[str, ShardStats]:
    """Stats of the shards an earlier attempt of this run committed (their stats are newer than the run)."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = record.create_timestamp.timestamp() if record is not None else float("inf")
    finished = {}
    for partition in specs:
        layout = ShardLayout(job.output_folder, partition, job.output_format)
        if layout.is_done() and (stats := ShardReader(layout).stats()).start_time >= started:
            finished[partition] = stats
    return finished


def _data_path(job: JobConfig, partition: str) -> str:
    layout = ShardLayout(job.output_folder, partition, job.output_format)
    return layout.data_path or layout.parquet_path


def build_tar_stage(
    dataset: DatasetSpec, stage: str, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """A stage that re-processes tars: the download stage's (same shard ids), or the input webdataset's."""
    source = dataset.upstream_stage(stage)
    if source is None:
        upstream, resolve = shard_inputs_key(dataset), plan_resolver(dataset)
    else:
        upstream, resolve = stage_key(dataset, source), upstream_resolver(dataset, source)
    return build_shard_stage(dataset, stage, upstream, partitions, resolve)
