"""The re-processing stages as Dagster assets: downsample and optical_flow over download's tars,
subset over an existing webdataset; one partition in-process, shard ids kept."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Any

import av
import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import yaml

from tests.helpers import stats
from tests.test_dagster import REPO, events
from v2d_core.testing.server import MediaServer
from v2d_dagster import example_media
from v2d_dagster.assets.shard_stage import AUTOMATION_LABEL
from v2d_dagster.factory import build_definitions
from v2d_dagster.testing import free_port

PLAN, DOWNLOAD = dg.AssetKey(["reels", "shard_plan"]), dg.AssetKey(["reels", "download"])
DOWNSAMPLE, FLOW = dg.AssetKey(["reels", "downsample"]), dg.AssetKey(["reels", "optical_flow"])


def write_reels(folder: Path, server: MediaServer, rows: int = 3, **dataset: Any) -> Path:
    """Dataset ``reels``: 3 rows in shards of 2 (00000, 00001), downloaded to tars, then re-processed."""
    folder.mkdir(parents=True, exist_ok=True)
    urls = [server.url("files", f"video_000{i % 2}.mp4") + f"?row={i}" for i in range(rows)]
    (folder / "reels.txt").write_text("\n".join(urls) + "\n")
    download = {"output_format": "webdataset", "number_sample_per_shard": 2, "processes_count": 1}
    spec = {
        "name": "reels",
        "url_list": "reels.txt",
        "output_root": "out",
        "stages": {"download": download | {"thread_count": 2, "max_retries": 0}, "downsample": {}},
        "schedules": {"downsample": "0 3 * * 0"},
    } | dataset
    spec["stages"]["optical_flow"] = {}
    (folder / "reels.yaml").write_text(yaml.safe_dump(spec))
    return folder


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def video_shape(data: bytes) -> tuple[int, int, float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height, float(stream.average_rate)


def checks_by_asset(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {(c.asset_key.path[-1], c.check_name): c.passed for c in events(result, "ASSET_CHECK_EVALUATION")}


def test_the_stage_graph_and_its_automation(tmp_path: Path, long_media: MediaServer) -> None:
    defs = build_definitions(str(write_reels(tmp_path, long_media)))
    graph = defs.resolve_asset_graph()
    snapshot = {
        key.to_user_string(): (
            sorted(dep.to_user_string() for dep in graph.get(key).parent_keys),
            getattr(graph.get(key).partitions_def, "name", None),
            getattr(graph.get(key).automation_condition, "label", None),
        )
        for key in graph.get_all_asset_keys()
    }
    assert snapshot == {
        "reels/shard_plan": ([], None, None),
        "reels/shard_inputs": (["reels/shard_plan"], "reels_shards", None),
        "reels/download": (["reels/shard_inputs"], "reels_shards", AUTOMATION_LABEL),
        "reels/downsample": (["reels/download"], "reels_shards", AUTOMATION_LABEL),
        "reels/optical_flow": (["reels/download"], "reels_shards", AUTOMATION_LABEL),
    }
    sensors = {sensor.name: sensor.default_status.value for sensor in defs.sensors}
    assert sensors == {  # automation: false
        "reels_automation": "STOPPED",
        "reels_url_list": "STOPPED",
        **{
            f"reels_{stage}_relaunch_{kind}": "STOPPED"
            for stage in ("download", "downsample", "optical_flow")
            for kind in ("failed", "stale")
        },
    }
    (schedule,) = defs.schedules
    assert (schedule.name, schedule.cron_schedule) == ("reels_downsample_schedule", "0 3 * * 0")
    running = build_definitions(str(write_reels(tmp_path / "on", long_media, automation=True)))
    automatic = [sensor for sensor in running.sensors if "_relaunch_" not in sensor.name]
    assert {sensor.default_status.value for sensor in automatic} == {"RUNNING"}
    assert {schedule.default_status.value for schedule in running.schedules} == {"RUNNING"}


def test_downsample_and_optical_flow_of_one_downloaded_shard_keep_its_id(
    tmp_path: Path, long_media: MediaServer
) -> None:
    folder = write_reels(tmp_path, long_media)
    defs = build_definitions(str(folder))
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(list(defs.assets), selection=[PLAN], instance=instance).success
        result = dg.materialize(
            list(defs.assets),
            selection=[DOWNLOAD, DOWNSAMPLE, FLOW],
            partition_key="00001",
            instance=instance,
        )
    assert result.success
    assert all(checks_by_asset(result).values()), checks_by_asset(result)
    assert len(checks_by_asset(result)) == 12
    out = folder / "out"
    for stage in ("download", "downsample", "optical_flow"):
        assert sorted(stats(out / stage)) == ["00001"], stage

    # downsample_ml: 224x224 clips at 5 fps, keys {row key}_{clip}
    clips = tar_members(out / "downsample" / "00001.tar")
    assert sorted(clips) == ["000010_00000.json", "000010_00000.mp4", "000010_00000.txt"]
    assert video_shape(clips["000010_00000.mp4"]) == (224, 224, 5.0)
    record = json.loads(clips["000010_00000.json"])
    assert record["url"].endswith("video_0000.mp4?row=2")
    rows = pq.read_table(out / "downsample" / "00001.parquet", columns=["key", "status"]).to_pylist()
    assert rows == [{"key": "000010_00000", "status": "success"}]

    # optical_flow: one fp16 flow array and its json per video, same keys as download
    flow = tar_members(out / "optical_flow" / "00001.tar")
    assert sorted(flow) == ["000010.json", "000010.npy", "000010.txt"]
    array = np.load(io.BytesIO(flow["000010.npy"]))
    assert array.ndim == 4 and array.shape[-1] == 2 and array.dtype == np.float16
    assert json.loads(flow["000010.json"])["mean_optical_flow_magnitude"] > 0

    by_asset = {
        e.materialization.asset_key.path[-1]: e.materialization
        for e in events(result, "ASSET_MATERIALIZATION")
    }
    downsampled = by_asset["downsample"].metadata
    assert (by_asset["downsample"].partition, downsampled["samples"].value) == ("00001", 1)
    assert downsampled["output_path"].value == str(out / "downsample" / "00001.tar")


def test_a_stage_whose_upstream_shard_is_missing_fails_without_retries(
    tmp_path: Path, long_media: MediaServer
) -> None:
    defs = build_definitions(str(write_reels(tmp_path, long_media)))
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(list(defs.assets), selection=[PLAN], instance=instance).success
        result = dg.materialize(
            list(defs.assets), selection=[DOWNSAMPLE], partition_key="00000", instance=instance,
            raise_on_error=False,
        )  # fmt: skip
    assert not result.success
    (failure,) = events(result, "STEP_FAILURE")
    assert "no finished tar" in str(failure.error.message) or "no finished tar" in str(failure)
    assert "STEP_UP_FOR_RETRY" not in [event.event_type_value for event in result.all_events]


def write_tar(path: Path, samples: dict[str, Path]) -> Path:
    """A webdataset tar: each key's video, json and caption."""
    with tarfile.open(path, "w") as tar:
        for key, video in samples.items():
            tar.add(video, arcname=f"{key}.mp4")
            for ext, data in (("json", json.dumps({"url": f"http://x/{key}", "key": key})), ("txt", key)):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data.encode())
                tar.addfile(info, io.BytesIO(data.encode()))
    return path


def test_subset_of_an_input_webdataset_registers_its_tars_as_partitions(
    tmp_path: Path, media_dir: Path
) -> None:
    tars = tmp_path / "archive"
    tars.mkdir()
    write_tar(tars / "00003.tar", {"00003000": media_dir / "video_0000.mp4"})
    write_tar(
        tars / "00007.tar",
        {"00007000": media_dir / "video_0001.mp4", "00007001": media_dir / "video_0002.mp4"},
    )
    resize = {"subsampling": {"ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale"}}}}
    spec = {
        "name": "archive",
        "url_list": "archive",
        "input_format": "webdataset",
        "output_root": "out",
        "stages": {"subset": {"config": resize, "processes_count": 1}},
    }
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "archive.yaml").write_text(
        yaml.safe_dump(spec | {"url_list": "../archive", "output_root": "../out"})
    )
    defs = build_definitions(str(tmp_path / "datasets"))
    subset = dg.AssetKey(["archive", "subset"])
    graph = defs.resolve_asset_graph()
    assert sorted(dep.to_user_string() for dep in graph.get(subset).parent_keys) == ["archive/shard_inputs"]
    with dg.DagsterInstance.ephemeral() as instance:
        plan = dg.materialize(
            list(defs.assets), selection=[dg.AssetKey(["archive", "shard_plan"])], instance=instance
        )
        assert instance.get_dynamic_partitions("archive_shards") == ["00003", "00007"]
        reported = {e.materialization.asset_key.path[-1] for e in events(plan, "ASSET_MATERIALIZATION")}
        assert reported == {"shard_plan"}  # new tars: their versions are observed by the first stage
        result = dg.materialize(
            list(defs.assets), selection=[subset], partition_key="00007", instance=instance
        )
        observed = [e.asset_observation_data.asset_observation for e in result.get_asset_observation_events()]
        assert [(o.asset_key.path[-1], o.partition) for o in observed] == [("shard_inputs", "00007")]
    assert all(checks_by_asset(result).values()), checks_by_asset(result)
    members = tar_members(tmp_path / "out" / "subset" / "00007.tar")
    assert sorted(members) == sorted(f"0000700{i}.{ext}" for i in (0, 1) for ext in ("json", "mp4", "txt"))
    width, height, _ = video_shape(members["00007001.mp4"])
    assert min(width, height) == 64
    assert sorted(stats(tmp_path / "out" / "subset")) == ["00007"]


def test_the_shipped_example_feeds_its_download_tars_to_the_subset_dataset(tmp_path: Path) -> None:
    server = example_media.serve(tmp_path / "media", port=free_port())
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        # the dg project's defs folder, laid out as in the repository: output_root is ../../../data/...
        datasets = Path(shutil.copytree(REPO / "v2d_dagster" / "defs", tmp_path / "v2d_dagster" / "defs"))
        videos = datasets / "example" / "videos.csv"
        videos.write_text(videos.read_text().replace(":8765/", f":{server.server_address[1]}/"))
        defs = build_definitions(str(datasets))
        batch = {"dagster/asset_partition_range_start": "00000", "dagster/asset_partition_range_end": "00002"}
        with dg.DagsterInstance.ephemeral() as instance:
            for dataset, stage in (("example", "download"), ("example_subset", "subset")):
                keys = [dg.AssetKey([dataset, "shard_plan"]), dg.AssetKey([dataset, stage])]
                assert dg.materialize(list(defs.assets), selection=keys[:1], instance=instance).success
                assert instance.get_dynamic_partitions(f"{dataset}_shards") == ["00000", "00001", "00002"]
                result = dg.materialize(list(defs.assets), selection=keys[1:], tags=batch, instance=instance)
                assert all(checks_by_asset(result).values()), checks_by_asset(result)
    finally:
        server.shutdown()
        server.server_close()
    output = tmp_path / "data" / "example_subset" / "subset"
    assert {name: shard["successes"] for name, shard in stats(output).items()} == {
        "00000": 3,
        "00001": 3,
        "00002": 2,  # the example's url that fails on purpose is not in its download tar
    }
    width, height, rate = video_shape(tar_members(output / "00001.tar")["000010.mp4"])
    assert (min(width, height), rate) == (128, 10.0)
