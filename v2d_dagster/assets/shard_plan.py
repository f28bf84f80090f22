"""``{dataset}/shard_plan``: read the url list once, write each shard's input rows, register partitions.

The plan also observes ``{dataset}/shard_inputs``, an external asset partitioned like the
stages: each shard's data version is the digest of its input rows. A stage's shard becomes
stale when its own rows change, not when rows are appended to other shards.
"""

import dagster as dg

from v2d_dagster.plan import cut_plan, read_plan, save_plan
from v2d_dagster.spec import DatasetSpec, plan_version


def shard_plan_key(dataset: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey([dataset.name, "shard_plan"])


def shard_inputs_key(dataset: DatasetSpec) -> dg.AssetKey:
    return dg.AssetKey([dataset.name, "shard_inputs"])


def build_shard_inputs(dataset: DatasetSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The per-shard input files: external (the plan writes them), one version per shard."""
    spec = dg.AssetSpec(
        shard_inputs_key(dataset),
        deps=[shard_plan_key(dataset)],
        partitions_def=partitions,
        group_name=dataset.name,
        description=f"Each shard's input rows in {dataset.shard_input_dir}, written by shard_plan.",
        kinds={"arrow"},
    )
    return dg.AssetsDefinition(specs=[spec])


def build_shard_plan(dataset: DatasetSpec, partitions: dg.DynamicPartitionsDefinition) -> dg.AssetsDefinition:
    """The unpartitioned asset that turns ``dataset``'s url list into one partition per shard id."""
    job = dataset.plan_job()
    shard_dir = dataset.shard_input_dir
    inputs_key = shard_inputs_key(dataset)

    @dg.asset(
        key=shard_plan_key(dataset),
        group_name=dataset.name,
        code_version=plan_version(job),
        description=f"Cuts {dataset.name}'s url list into shards; one `{partitions.name}` partition each.",
        kinds={"arrow"},
        metadata={"url_list": str(dataset.url_list), "shard_input_dir": shard_dir},
    )
    def shard_plan(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        before = read_plan(shard_dir, missing_ok=True)
        plan = cut_plan(job, shard_dir)
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        new = sorted(key for key in plan.shards if key not in known)
        context.instance.add_dynamic_partitions(partitions.name, new)
        changed = sorted(key for key, shard in plan.shards.items() if before.shards.get(key) != shard)
        for key in changed:
            context.log_event(
                dg.AssetObservation(
                    asset_key=inputs_key,
                    partition=key,
                    tags={"dagster/data_version": plan.shards[key].digest},
                    metadata={"rows": plan.shards[key].row_count},
                )
            )
        save_plan(plan, shard_dir)  # last: a crash before it re-observes the same shards next time
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
                "shard_input_dir": dg.MetadataValue.path(shard_dir),
                "plan_digest": plan.version,
            },
            # No data version of its own: every shard depends on this one asset, so a new
            # version would mark every existing shard stale when rows are only appended.
        )

    return shard_plan
