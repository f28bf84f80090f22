"""A stage asset partitioned by shard: keys in, ``process_shard`` / ``run_shards`` called, metadata out.

One run handles one partition (``process_shard`` in the run's process; with the run config
``retry_failed``, a written shard only gets its transient failures fetched again) or a range
of partitions from a backfill (``run_shards`` on the run's own process pool): one run per
``shards_per_run`` shards, or the whole range in one run with ``backfill: single_run``.

Each shard the run commits is materialized on its own, with its own data version and lineage
(:mod:`v2d_dagster.lineage`), metadata and check results; a shard that failed is named in the
step's failure. Retries belong to Dagster: the core runs each shard once per attempt, the
stage's RetryPolicy re-runs the step, and a retry skips the shards this run already
materialized (read from the run's own events). A shard is never replaced by a worse one
(the stage's ``min_success_rate`` / ``max_success_drop``, checked in the core's commit)
unless the run config says ``force`` or ``retry_failed``.

``readable`` and ``success_rate`` are blocking checks: a shard that fails one fails the step,
and the stages downstream wait (``all_deps_blocking_checks_passed``). Where a stage's shards
come from is the one thing stages differ in: a :data:`ShardResolver` turns partition keys into
the core's :class:`ShardSpec` (the plan's input files, or the tars an upstream stage wrote).
"""

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from pydantic import Field

from v2d_core.errors import ConfigError, InputError
from v2d_core.inputs.sharding import ShardSpec
from v2d_core.job import JobConfig
from v2d_core.redact import redact_text
from v2d_core.runners.local import run_shards
from v2d_core.shards import ShardLayout, ShardStats
from v2d_core.shards.entry import run_shard
from v2d_dagster.assets.shard_plan import shard_inputs_key
from v2d_dagster.k8s import k8s_config_tags
from v2d_dagster.lineage import observe_first_inputs, shard_materialization
from v2d_dagster.metadata import environment_metadata, shard_metadata
from v2d_dagster.plan import read_plan, upstream_tar_specs
from v2d_dagster.run_tags import tag_run
from v2d_dagster.shard_checks import BLOCKING, CHECK_NAMES, shard_check_evaluations
from v2d_dagster.spec import DatasetSpec, stage_version

# (job, partition keys) -> partition key -> the core's unit of work; raises InputError.
ShardResolver = Callable[[JobConfig, Sequence[str]], dict[str, ShardSpec]]

CHECK_DESCRIPTIONS = {
    "readable": "The shard's parquet and data file open, and the data holds exactly its successful samples.",
    "row_count_matches_input": "The shard's parquet has one row per input row.",
    "unique_keys": "No sample key appears twice in the shard's parquet.",
    "success_rate": "Successful samples / rows is at least the stage's min_success_rate.",
}


AUTOMATION_LABEL = "eager, once upstream blocking checks pass"


@dataclass(slots=True)
class StageOutcome:
    """What a run did to its shards: the stats of those it committed, the errors of those it did not."""

    written: dict[str, ShardStats] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


class ShardRunConfig(dg.Config):
    """Launch-time knobs, not in code_version: how fast a run goes, and whether it only retries."""

    processes_count: int | None = Field(default=None, description="Shards processed at once in a batch run.")
    thread_count: int | None = Field(default=None, description="Download threads per shard.")
    retry_failed: bool = Field(
        default=False,
        description="Shards already written only get their transiently failed rows (timeouts, 5xx, "
        "resets) fetched again; the other rows are kept as they are.",
    )
    force: bool = Field(
        default=False,
        description="Replace shards even by worse ones (a success rate under min_success_rate, or more "
        "than max_success_drop under the shard replaced); without it such a shard is kept and the run fails.",
    )

    def apply(self, job: JobConfig) -> JobConfig:
        if self.retry_failed:
            job = dataclasses.replace(job, incremental_mode="retry_failed")
        if self.force:
            job = dataclasses.replace(job, replace_gate=None)
        changes = {
            name: value
            for name, value in self.model_dump(exclude={"retry_failed", "force"}).items()
            if value is not None
        }
        if not changes:
            return job
        distribution = dataclasses.replace(job.config.distribution, **changes)
        return dataclasses.replace(job, config=dataclasses.replace(job.config, distribution=distribution))


def stage_automation(inputs: dg.AssetKey) -> dg.AutomationCondition:
    """Eager once the upstream blocking checks pass. A new shard's ``shard_inputs`` has no event
    until a stage reads it (:func:`~v2d_dagster.lineage.observe_first_inputs`): it is never
    "missing", and the new partition itself (newly missing) is what requests it."""
    present = dg.AutomationCondition.any_deps_missing().ignore(dg.AssetSelection.assets(inputs))
    eager = dg.AutomationCondition.eager().replace("any_deps_missing", present)
    return (eager & dg.AutomationCondition.all_deps_blocking_checks_passed()).with_label(AUTOMATION_LABEL)


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
    upstream_is_external = upstream == shard_inputs_key(dataset)
    shown_folder = redact_text(job.output_folder)
    with warnings.catch_warnings():  # partitioned check specs are a Dagster preview feature
        warnings.simplefilter("ignore", dg.PreviewWarning)
        check_specs = [
            dg.AssetCheckSpec(
                name,
                asset=key,
                description=CHECK_DESCRIPTIONS[name],
                partitions_def=partitions,
                blocking=name in BLOCKING,
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
        # Materialized shard by shard (lineage.shard_materialization), not by the step's output.
        skippable=True,
        # Runs only while the dataset's automation sensor runs (``automation: true``); waits for the
        # upstream shard's blocking checks.
        automation_condition=stage_automation(shard_inputs_key(dataset)),
    )
    single_run = settings.backfill == "single_run"
    downstream = {
        stage_key(dataset, other) for other in dataset.stages if dataset.upstream_stage(other) == stage
    }

    @dg.multi_asset(
        name=f"{dataset.name}__{stage}",
        specs=[spec],
        check_specs=check_specs,
        partitions_def=partitions,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run()
        if single_run
        else dg.BackfillPolicy.multi_run(settings.shards_per_run),
        retry_policy=dg.RetryPolicy(
            max_retries=settings.max_retries, delay=1, backoff=dg.Backoff.EXPONENTIAL
        ),
        pool=settings.pool_name,
        # dagster-k8s sizes the step's pod from these (V2D_EXECUTOR=k8s: one pod per step).
        op_tags={"v2d/dataset": dataset.name, "v2d/stage": stage, **k8s_config_tags(settings.resources)},
    )
    def shard_stage(context: dg.AssetExecutionContext, config: ShardRunConfig) -> Iterator[Any]:
        tag_run(context)
        run_job = config.apply(job)
        specs = shard_specs(resolve, run_job, context.partition_keys)
        if key not in context.selected_asset_keys:  # the checks alone, on the shards as they are
            yield from evaluate_checks(context, key, specs, run_job, settings.min_success_rate)
            return
        if upstream_is_external:
            observe_first_inputs(context, upstream, dataset.shard_input_dir, list(specs))
        outcome = run_stage(context, specs, run_job)
        if not outcome.failures and downstream & context.job_def.asset_layer.selected_asset_keys:
            # A stage downstream runs in this run and waits for this step's output; Dagster then also
            # logs its own materialization of the range, before the per-shard ones that carry lineage.
            yield dg.MaterializeResult(asset_key=key)
        environment = environment_metadata(context, run_job.config.reading)
        for partition, stats in outcome.written.items():
            metadata = {**shard_metadata(stats, _data_path(run_job, partition)), "environment": environment}
            parquet = f"{run_job.output_folder}/{partition}.parquet"
            yield shard_materialization(
                context, key, upstream, upstream_is_external, partition, parquet, metadata
            )
        written = {partition: specs[partition] for partition in outcome.written}
        yield from evaluate_checks(context, key, written, run_job, settings.min_success_rate)
        if outcome.failures:
            lines = [f"{partition}: {error}" for partition, error in sorted(outcome.failures.items())]
            raise dg.Failure(
                description=f"{len(outcome.failures)} of {len(specs)} shard(s) failed:\n" + "\n".join(lines),
                metadata={"failed_shards": ", ".join(sorted(outcome.failures))},
            )

    return shard_stage


def shard_specs(resolve: ShardResolver, job: JobConfig, partitions: Sequence[str]) -> dict[str, ShardSpec]:
    """Partition key -> the core's unit of work."""
    try:
        return resolve(job, partitions)
    except InputError as error:  # no plan, or a shard it does not have: retrying will not help
        raise dg.Failure(description=redact_text(str(error)), allow_retries=False) from None


def run_stage(
    context: dg.AssetExecutionContext, specs: Mapping[str, ShardSpec], job: JobConfig
) -> StageOutcome:
    """Process each shard of ``specs`` (partition key -> spec) once, but those an earlier attempt of
    this run materialized."""
    done = materialized_in_this_run(context) if context.retry_number else set()
    todo = [spec for partition, spec in specs.items() if partition not in done]
    if done:
        context.log.info(
            f"retry {context.retry_number}: {len(done & set(specs))} shard(s) already done in this run"
        )
    try:
        if len(todo) <= 1:  # one shard: in this process, no pool to start
            results, failures = _in_process(todo, job)
        else:
            summary = run_shards(todo, job)
            results, failures = summary.results, summary.failed_shards
    except (ConfigError, InputError) as error:  # the message says it all; no traceback to leak secrets
        raise dg.Failure(description=redact_text(str(error)), allow_retries=False) from None
    return StageOutcome(
        written={job.shard_name(result.shard_id): result.stats() for result in results},
        failures={job.shard_name(shard_id): error for shard_id, error in failures.items()},
    )


def _in_process(specs: Sequence[ShardSpec], job: JobConfig) -> tuple[list, dict[int, str]]:
    """``specs`` processed here, one after the other: the results, and shard id -> error of the others."""
    results, failures = [], {}
    for spec in specs:
        try:
            results.append(run_shard(spec, job))
        except (ConfigError, InputError):
            raise
        except Exception as error:  # a failed shard is reported by name, as the pool reports it
            failures[spec.shard_id] = redact_text(f"{type(error).__name__}: {error}")
    return results, failures


def materialized_in_this_run(context: dg.AssetExecutionContext) -> set[str]:
    """The partitions of the step's asset an earlier attempt of this run materialized."""
    connection = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    events = [record.event_log_entry.dagster_event for record in connection.records]
    return {
        event.partition
        for event in events
        if event is not None and event.asset_key in context.selected_asset_keys and event.partition
    }


def evaluate_checks(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    specs: Mapping[str, ShardSpec],
    job: JobConfig,
    min_success_rate: float,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """Each selected check's verdict for each partition (a failed blocking one fails the step);
    then the checks' (empty) step outputs."""
    selected = {check.name for check in context.selected_asset_check_keys if check.asset_key == key}
    if not selected:
        return
    for partition, spec in specs.items():
        target = latest_materialization(context, key, partition)
        for evaluation in shard_check_evaluations(key, partition, spec, job, min_success_rate, target):
            if evaluation.check_name in selected:
                yield evaluation
    for name in sorted(selected):
        yield dg.Output(None, output_name=_check_output_name(context, dg.AssetCheckKey(key, name)))


def latest_materialization(
    context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The shard's latest materialization, which a check evaluation says it verified (a check is
    current, and can let the stages downstream go, only for that one)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    (record,) = records
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=record.event_log_entry.run_id, storage_id=record.storage_id, timestamp=record.timestamp
    )


def _check_output_name(context: dg.AssetExecutionContext, check_key: dg.AssetCheckKey) -> str:
    return context.assets_def.get_output_name_for_asset_check_key(check_key)


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
