"""``{dataset}/shard_plan``: read the url list once, write each shard's input rows, register partitions.

``{dataset}/shard_inputs`` is an external asset partitioned like the stages: a shard's data
version is the digest of its input rows. A stage's shard becomes stale when its own rows
change, not when rows are appended to other shards. For an input webdataset the plan lists
its tars instead: each tar is a partition, ``shard_inputs`` is the tars, and a tar's version
is a digest of its size and modification time.

The plan reports ``shard_inputs`` only for registered shards whose rows changed, so a plan
of 10,000 new shards writes no per-shard event (Dagster stores events one at a time). A new
shard's version is reported by the first stage that reads it
(:func:`~v2d_dagster.lineage.observe_first_inputs`), before that stage's materialization
points at it; the new partition itself is what the stages' automation picks up.

A change is reported twice, because Dagster (1.13) reads an external asset's partitions
from two kinds of event: automation conditions count a partition as updated by its
materializations, staleness compares the data versions of its observations.
"""

import dagster as dg

from v2d_core.redact import redact_text
from v2d_dagster.lineage import shard_input_events
from v2d_dagster.plan import cut_plan, read_plan, save_plan
from v2d_dagster.spec import DatasetSpec, plan_version


def shard_plan_key(dataset: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey([dataset.name, "shard_plan"])


def shard_inputs_key(dataset: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey([dataset.name, "shard_inputs"])


def build_shard_inputs(dataset: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The per-shard input files: external (the plan writes them), one version per shard."""
    if dataset.input_is_tars:
        description, kinds = f"The input webdataset's tars ({dataset.url_list}), one per shard.", {"tar"}
    else:
        description = f"Each shard's input rows in {dataset.shard_input_dir}, written by shard_plan."
        kinds = {"arrow"}
    spec = dg.AssetSpec(
        shard_inputs_key(dataset),
        deps=[shard_plan_key(dataset)],
        partitions_def=partitions,
        group_name=dataset.name,
        description=redact_text(description),
        kinds=kinds,
    )
    return dg.AssetsDefinition(specs=[spec])


def build_shard_plan(dataset: DatasetSpec, partitions: dg.DynamicPartitionsDefinition) -> dg.AssetsDefinition:
    """The unpartitioned asset that turns ``dataset``'s url list into one partition per shard id."""
    job = dataset.plan_job()
    shard_dir = dataset.shard_input_dir
    inputs_key = shard_inputs_key(dataset)

    upstream = [dg.AssetKey(dataset.upstream_asset.split("/"))] if dataset.upstream_asset else []

    @dg.asset(
        key=shard_plan_key(dataset),
        deps=upstream,
        group_name=dataset.name,
        code_version=plan_version(job),
        description=f"Cuts {dataset.name}'s input into shards; one `{partitions.name}` partition each.",
        kinds={"arrow"},
        metadata={"url_list": redact_text(str(dataset.url_list)), "shard_input_dir": redact_text(shard_dir)},
    )
    def shard_plan(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        before = read_plan(shard_dir, missing_ok=True)
        plan = cut_plan(job, shard_dir)
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        changed = sorted(k for k in known & plan.shards.keys() if before.shards.get(k) != plan.shards[k])
        for key in changed:
            for event in shard_input_events(inputs_key, key, plan.shards[key]):
                context.log_event(event)
        save_plan(plan, shard_dir)  # after the changes: a crash before it reports them again next time
        new = sorted(key for key in plan.shards if key not in known)
        context.instance.add_dynamic_partitions(partitions.name, new)  # last: the plan names them
        orphans = sorted(known - set(plan.shards))
        if orphans:
            context.log.warning(f"partitions no longer in the plan (kept for their history): {orphans[:20]}")
        return dg.MaterializeResult(
            metadata={
                "shards": len(plan.shards),
                "rows": plan.row_count,
                "new_partitions": len(new),
                "changed_shards": len(changed),
                "first_new": new[0] if new else "",
                "last_new": new[-1] if new else "",
                "shard_input_dir": dg.MetadataValue.path(redact_text(shard_dir)),
                "plan_digest": plan.version,
            },
            # No data version of its own: every shard depends on this one asset, so a new
            # version would mark every existing shard stale when rows are only appended.
        )

    return shard_plan
