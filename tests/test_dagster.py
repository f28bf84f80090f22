"""The Dagster layer: dataset specs, the asset graph, and shards materialized in-process."""

from __future__ import annotations

import importlib
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
import yaml
import yt_dlp.version

from tests.helpers import stats, write_csv
from v2d_core import video2dataset
from v2d_core.errors import ConfigError
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions
from v2d_dagster.spec import load_dataset, load_datasets

REPO = Path(__file__).resolve().parents[1]
DOWNLOAD = dg.AssetKey(["clips", "download"])
PLAN = dg.AssetKey(["clips", "shard_plan"])
CHECKS = ["readable", "row_count_matches_input", "success_rate", "unique_keys"]


def write_dataset(folder: Path, server: MediaServer, **stage: Any) -> Path:
    """A dataset ``clips`` of 5 rows (4 videos and a 404) in shards of 2, under ``folder``."""
    rows = [{"url": server.url("files", f"video_000{i}.mp4"), "caption": f"cap {i}"} for i in range(4)]
    rows.append({"url": server.url("status/404", "gone.mp4"), "caption": "gone"})
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "clips.csv", rows)
    settings = {
        "output_format": "files",
        "number_sample_per_shard": 2,
        "processes_count": 2,
        "thread_count": 2,
        "timeout": 5,
        "retry_backoff": 0.01,
        "shards_per_run": 3,
        "max_retries": 0,
        "min_success_rate": 0.5,
    }
    spec = {
        "name": "clips",
        "url_list": "clips.csv",
        "input_format": "csv",
        "caption_col": "caption",
        "output_root": "out",
        "stages": {"download": settings | stage},
    }
    (folder / "clips.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture
def datasets(tmp_path: Path, media_server: MediaServer) -> Path:
    return write_dataset(tmp_path / "datasets", media_server)


def materialize_plan(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    result = dg.materialize(list(defs.assets), selection=[PLAN], instance=instance)
    assert result.success


def materialize_downloads(
    defs: dg.Definitions, instance: dg.DagsterInstance, partitions: Iterable[str]
) -> None:
    """One download run per partition, each let fail (a shard under its check's floor fails its run)."""
    for partition in partitions:
        dg.materialize(
            list(defs.assets),
            selection=[DOWNLOAD],
            partition_key=partition,
            instance=instance,
            raise_on_error=False,
        )


def parquet_rows(path: Path) -> list[dict[str, Any]]:
    """A status parquet's rows by key (rows are written in the order fetches finish)."""
    columns = ["url", "caption", "key", "status", "error_message"]
    return sorted(pq.read_table(path, columns=columns).to_pylist(), key=lambda row: row["key"])


def events(result: dg.ExecuteInProcessResult, kind: str) -> list[Any]:
    return [event.event_specific_data for event in result.all_events if event.event_type_value == kind]


# -- specs and the asset graph ---------------------------------------------------------------


def test_the_shipped_example_dataset_loads() -> None:
    example, subset = sorted(load_datasets(REPO / "v2d_dagster" / "defs"), key=lambda spec: spec.name)
    assert (example.name, subset.name) == ("example", "example_subset")
    assert subset.url_list == str(REPO / "data" / "example" / "download")  # the example's download tars
    job = example.job("download")
    assert job.config.storage.number_sample_per_shard == 3
    assert Path(str(example.url_list)).is_file()
    assert example.output_root == str(REPO / "data" / "example")


def test_definitions_module_loads_the_shipped_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("V2D_DATASETS_DIR", raising=False)  # the dg project's defs folder
    module = importlib.reload(importlib.import_module("v2d_dagster.definitions"))
    dg.Definitions.validate_loadable(module.defs)
    keys = module.defs.resolve_asset_graph().get_all_asset_keys()
    assert sorted(key.to_user_string() for key in keys) == [
        "example/download",
        "example/downsample",
        "example/optical_flow",
        "example/shard_inputs",
        "example/shard_plan",
        "example_subset/shard_inputs",
        "example_subset/shard_plan",
        "example_subset/subset",
    ]
    graph = module.defs.resolve_asset_graph()
    subset_plan = graph.get(dg.AssetKey(["example_subset", "shard_plan"]))
    assert subset_plan.parent_keys == {dg.AssetKey(["example", "download"])}  # all four stages, one graph
    assert sorted(sensor.name for sensor in module.defs.sensors) == [
        "example_automation",
        "example_download_relaunch_failed",
        "example_download_relaunch_stale",
        "example_downsample_relaunch_failed",
        "example_downsample_relaunch_stale",
        "example_optical_flow_relaunch_failed",
        "example_optical_flow_relaunch_stale",
        "example_subset_automation",
        "example_subset_subset_relaunch_failed",
        "example_subset_subset_relaunch_stale",
        "example_subset_url_list",
        "example_url_list",
    ]
    assert [schedule.name for schedule in module.defs.schedules] == ["example_downsample_schedule"]


def test_asset_graph_of_a_dataset(datasets: Path) -> None:
    graph = build_definitions(str(datasets)).resolve_asset_graph()
    snapshot = {
        key.to_user_string(): {
            "deps": sorted(dep.to_user_string() for dep in graph.get(key).parent_keys),
            "partitions": getattr(graph.get(key).partitions_def, "name", None),
            "group": graph.get(key).group_name,
            "backfill": getattr(graph.get(key).backfill_policy, "max_partitions_per_run", None),
            "executable": graph.get(key).is_executable,
            "checks": sorted(check.name for check in graph.get(key).check_keys),
        }
        for key in graph.get_all_asset_keys()
    }
    assert snapshot == {
        "clips/shard_plan": {
            "deps": [],
            "partitions": None,
            "group": "clips",
            "backfill": None,
            "executable": True,
            "checks": [],
        },
        "clips/shard_inputs": {
            "deps": ["clips/shard_plan"],
            "partitions": "clips_shards",
            "group": "clips",
            "backfill": None,
            "executable": False,
            "checks": [],
        },
        "clips/download": {
            "deps": ["clips/shard_inputs"],
            "partitions": "clips_shards",
            "group": "clips",
            "backfill": 3,
            "executable": True,
            "checks": CHECKS,
        },
    }
    download = graph.get(DOWNLOAD).assets_def
    assert download.op.retry_policy == dg.RetryPolicy(max_retries=0, delay=1, backoff=dg.Backoff.EXPONENTIAL)
    assert download.op.pool == "v2d_fetch"
    assert {check.name: check.blocking for check in download.check_specs} == {
        "readable": True,
        "row_count_matches_input": False,
        "success_rate": True,
        "unique_keys": False,
    }


def test_a_stage_can_backfill_in_one_run_in_a_pool_of_its_own(
    tmp_path: Path, media_server: MediaServer
) -> None:
    folder = write_dataset(tmp_path / "datasets", media_server, backfill="single_run", pool="slow_cdn")
    download = build_definitions(str(folder)).resolve_asset_graph().get(DOWNLOAD)
    assert download.backfill_policy == dg.BackfillPolicy.single_run()
    assert download.assets_def.op.pool == "slow_cdn"


def test_code_version_follows_what_a_stage_writes_not_how_fast(
    tmp_path: Path, media_server: MediaServer
) -> None:
    def version(**stage: Any) -> str | None:
        folder = write_dataset(tmp_path / str(len(list(tmp_path.iterdir()))), media_server, **stage)
        return build_definitions(str(folder)).resolve_asset_graph().get(DOWNLOAD).code_version

    base = version()
    assert base == version(processes_count=7, thread_count=9, shards_per_run=5)
    assert base != version(output_format="webdataset")
    assert base != version(config={"reading": {"yt_args": {"download_size": 720}}})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "bad-name"}, "bad-name"),
        ({"colour": "red"}, "colour"),
        ({"stages": {"download": {"number_sample_per_shards": 2}}}, "number_sample_per_shards"),
        ({"stages": {"download": {"shards_per_run": 0}}}, "shards_per_run"),
        ({"stages": {"tracking": {}}}, "tracking"),
        ({"stages": {"download": {}, "downsample": {}}}, "output_format to webdataset"),
        ({"stages": {"download": {}, "subset": {}}}, "subset reads an input webdataset"),
        ({"input_format": "webdataset", "stages": {"download": {}}}, "needs no download"),
        ({"schedules": {"optical_flow": "0 3 * * 0"}}, "optical_flow"),
        ({"automation": "yes"}, "automation"),
        ({"stages": {"download": {"max_shard_retry": 2}}}, "max_retries"),
        ({"stages": {"download": {"backfill": "one_run"}}}, "backfill"),
        ({"stages": {"download": {"max_success_drop": 1.5}}}, "max_success_drop"),
        ({"upstream_asset": "not a key"}, "upstream_asset"),
    ],
)
def test_bad_dataset_files_are_errors_naming_file_and_key(tmp_path: Path, change: dict, message: str) -> None:
    spec = {"name": "ok", "url_list": "x.txt", "output_root": "out", "stages": {"download": {}}} | change
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message) as error:
        load_dataset(path)
    assert "bad.yaml" in str(error.value)


# -- materializing shards in-process ---------------------------------------------------------


def test_plan_registers_one_partition_per_shard(datasets: Path) -> None:
    defs = build_definitions(str(datasets))
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(defs, instance)
        assert instance.get_dynamic_partitions("clips_shards") == ["00000", "00001", "00002"]
        materialize_plan(defs, instance)  # idempotent: same ids, nothing added
        assert instance.get_dynamic_partitions("clips_shards") == ["00000", "00001", "00002"]
    manifest = json.loads((datasets / "out" / "_shard_inputs" / "manifest.json").read_text())
    assert {key: shard["row_count"] for key, shard in manifest.items()} == {
        "00000": 2,
        "00001": 2,
        "00002": 1,
    }


def test_one_partition_writes_what_the_cli_writes_for_that_shard(datasets: Path, tmp_path: Path) -> None:
    defs = build_definitions(str(datasets))
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(defs, instance)
        result = dg.materialize(
            list(defs.assets), selection=[DOWNLOAD], partition_key="00001", instance=instance
        )
    assert result.success
    cli = tmp_path / "cli"
    video2dataset(
        url_list=str(datasets / "clips.csv"),
        input_format="csv",
        caption_col="caption",
        output_folder=str(cli),
        output_format="files",
        number_sample_per_shard=2,
        processes_count=1,
        thread_count=2,
        show_progress=False,
    )
    dagster_out = datasets / "out" / "download"
    assert sorted(p.name for p in dagster_out.iterdir()) == ["00001", "00001.parquet", "00001_stats.json"]
    files = sorted(p.name for p in (cli / "00001").iterdir())
    assert files == sorted(p.name for p in (dagster_out / "00001").iterdir())
    assert files == sorted(f"00001{i}.{ext}" for i in range(2) for ext in ("mp4", "txt", "json"))
    for name in files:
        assert (dagster_out / "00001" / name).read_bytes() == (cli / "00001" / name).read_bytes(), name
    assert parquet_rows(dagster_out / "00001.parquet") == parquet_rows(cli / "00001.parquet")

    (materialization,) = [event.materialization for event in events(result, "ASSET_MATERIALIZATION")]
    metadata = {name: getattr(value, "value", value) for name, value in materialization.metadata.items()}
    assert materialization.partition == "00001"
    assert (metadata["samples"], metadata["successes"], metadata["top_errors"]) == (2, 2, "no failures")
    assert metadata["failures_by_status"] == {"failed_to_download": 0, "failed_to_subsample": 0}
    assert metadata["bytes"] > 0 and metadata["seconds"] > 0 and metadata["videos_per_second"] > 0
    assert metadata["output_path"] == str(dagster_out / "00001")
    assert metadata["environment"]["ffmpeg"]["path"] == ffmpeg_exe()  # v2d-doctor's facts for the run
    assert metadata["environment"]["yt_dlp"]["version"] == yt_dlp.version.__version__
    assert {(c.check_name, c.partition, c.passed) for c in events(result, "ASSET_CHECK_EVALUATION")} == {
        (name, "00001", True) for name in CHECKS
    }


def test_a_batch_run_reports_each_partition_and_checks_fail_on_a_bad_shard(datasets: Path) -> None:
    defs = build_definitions(str(datasets))
    batch = {"dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00002"}
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(defs, instance)
        result = dg.materialize(
            list(defs.assets), selection=[DOWNLOAD], tags=batch, instance=instance, raise_on_error=False
        )
        # success_rate is a blocking check: shard 00002 (a 404) under its floor fails the run
        assert not result.success
        (failure,) = events(result, "STEP_FAILURE")
        assert "blocking asset check" in failure.error.message and "success_rate" in failure.error.message
        by_partition = {
            e.materialization.partition: e.materialization for e in events(result, "ASSET_MATERIALIZATION")
        }
        assert sorted(by_partition) == ["00000", "00001", "00002"]
        last = {
            name: getattr(value, "value", value) for name, value in by_partition["00002"].metadata.items()
        }
        assert (last["samples"], last["successes"]) == (1, 0)
        assert last["failures_by_status"] == {"failed_to_download": 1, "failed_to_subsample": 0}
        assert "404" in last["top_errors"]
        verdicts = {(c.check_name, c.partition): c.passed for c in events(result, "ASSET_CHECK_EVALUATION")}
        assert len(verdicts) == 12
        assert [check for check, passed in verdicts.items() if not passed] == [("success_rate", "00002")]

        # a damaged shard: the checks alone (no re-download) see it
        (datasets / "out" / "download" / "00000" / "000000.mp4").unlink()
        graph = defs.resolve_asset_graph()
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection=set(), asset_check_selection=set(graph.asset_check_keys)
        )
        checked = job.execute_in_process(instance=instance, partition_key="00000", raise_on_error=False)
    assert not checked.success  # readable is blocking
    assert events(checked, "ASSET_MATERIALIZATION") == []
    assert {c.check_name: c.passed for c in events(checked, "ASSET_CHECK_EVALUATION")} == {
        "readable": False,
        "row_count_matches_input": True,
        "success_rate": True,
        "unique_keys": True,
    }


def test_webdataset_shard_is_checked_as_a_tar(tmp_path: Path, media_server: MediaServer) -> None:
    folder = write_dataset(tmp_path / "datasets", media_server, output_format="webdataset")
    defs = build_definitions(str(folder))
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(defs, instance)
        result = dg.materialize(
            list(defs.assets), selection=[DOWNLOAD], partition_key="00000", instance=instance
        )
    assert all(c.passed for c in events(result, "ASSET_CHECK_EVALUATION"))
    with tarfile.open(folder / "out" / "download" / "00000.tar") as tar:
        assert sorted(tar.getnames()) == sorted(
            f"00000{i}.{e}" for i in range(2) for e in ("mp4", "txt", "json")
        )


def stale_status(defs: dg.Definitions, instance: dg.DagsterInstance, partition: str) -> tuple[str, list[str]]:
    """Staleness of one download shard as the UI resolves it (Dagster's test helper, not public API)."""
    from dagster._utils.test.data_versions import get_stale_status_resolver

    resolver = get_stale_status_resolver(instance, list(defs.assets))
    causes = [cause.reason for cause in resolver.get_stale_causes(DOWNLOAD, partition)]
    return resolver.get_status(DOWNLOAD, partition).value, causes


def test_changed_settings_mark_shards_stale_and_rewrite_the_same_keys(
    tmp_path: Path, media_server: MediaServer
) -> None:
    before = build_definitions(str(write_dataset(tmp_path / "a", media_server)))
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(before, instance)
        dg.materialize(list(before.assets), selection=[DOWNLOAD], partition_key="00001", instance=instance)
        assert stale_status(before, instance, "00001") == ("FRESH", [])

        after = build_definitions(
            str(write_dataset(tmp_path / "a", media_server, output_format="webdataset"))
        )
        assert stale_status(after, instance, "00001") == ("STALE", ["has a new code version"])
        dg.materialize(list(after.assets), selection=[DOWNLOAD], partition_key="00001", instance=instance)
        assert stale_status(after, instance, "00001") == ("FRESH", [])
    output = tmp_path / "a" / "out" / "download"
    with tarfile.open(output / "00001.tar") as tar:
        assert {name.split(".")[0] for name in tar.getnames()} == {
            p.stem for p in (output / "00001").iterdir()
        }


def test_appended_rows_add_shards_and_stale_only_the_shard_they_change(
    datasets: Path, media_server: MediaServer
) -> None:
    defs = build_definitions(str(datasets))
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(defs, instance)
        # 00002 (a 404) fails its blocking success_rate check
        materialize_downloads(defs, instance, ("00000", "00002"))
        with (datasets / "clips.csv").open("a") as handle:  # 5 rows + 2: shard 00002 fills up, 00003 starts
            handle.write(f"{media_server.url('files', 'video_0000.mp4')}?again,again\n")
            handle.write(f"{media_server.url('files', 'video_0001.mp4')}?again,again\n")
        materialize_plan(defs, instance)
        assert instance.get_dynamic_partitions("clips_shards") == ["00000", "00001", "00002", "00003"]
        assert stale_status(defs, instance, "00000") == ("FRESH", [])
        assert stale_status(defs, instance, "00002") == ("STALE", ["has a new dependency data version"])
        assert stale_status(defs, instance, "00003")[0] == "MISSING"


def test_a_failing_shard_fails_the_batch_and_the_retry_skips_finished_shards(
    tmp_path: Path, media_server: MediaServer
) -> None:
    folder = write_dataset(tmp_path / "datasets", media_server, max_retries=1)
    defs = build_definitions(str(folder))
    batch = {"dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00002"}
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(defs, instance)
        (folder / "out" / "_shard_inputs" / "00002.arrow").write_bytes(b"not arrow")
        result = dg.materialize(
            list(defs.assets), selection=[DOWNLOAD], tags=batch, instance=instance, raise_on_error=False
        )
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert not result.success
    kinds = [event.event_type_value for event in result.all_events]
    assert kinds.count("STEP_UP_FOR_RETRY") == 1 and kinds.count("STEP_FAILURE") == 1
    assert any("retry 1: 2 shard(s) already done in this run" in message for message in logs)
    assert sorted(stats(folder / "out" / "download")) == ["00000", "00001"]
