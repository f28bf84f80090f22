"""video2dataset 1.3.0's own config files (tests/video2dataset_1_3_0/configs, verbatim) load and run."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from v2d_core.api import video2dataset
from v2d_core.config import Config
from v2d_core.errors import ConfigError
from v2d_core.job import JobConfig
from v2d_core.testing.scenes import make_scene_video
from v2d_core.testing.server import MediaServer

CONFIGS = Path(__file__).parent / "video2dataset_1_3_0" / "configs"


def config_file(name: str) -> str:
    return str(CONFIGS / f"{name}.yaml")


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two 5 s scenes (one cut at 5 s) served on 127.0.0.1, downloaded with 1.3.0's default config."""
    folder = tmp_path_factory.mktemp("v2d_configs")
    media = folder / "media"
    make_scene_video(
        media / "two_scenes.mp4", [("testsrc2", 5.0), ("smptebars", 5.0)], width=192, height=108, gop=25
    )
    with MediaServer(media) as server:
        (folder / "videos.csv").write_text(
            f"url,caption\n{server.url('files', 'two_scenes.mp4')},two scenes\n"
        )
        summary = video2dataset(
            url_list=str(folder / "videos.csv"),
            caption_col="caption",
            output_folder=str(folder / "dataset"),
            output_format="webdataset",
            config=config_file("default"),
            show_progress=False,
        )
    assert not summary.failed_shards
    yield folder / "dataset"


def test_the_configs_load_unchanged() -> None:
    default = Config.load(config_file("default"))
    assert default.reading.yt_args.yt_metadata_args == {
        "writesubtitles": "all",
        "subtitleslangs": ["en"],
        "writeautomaticsub": True,
        "get_info": True,
    }
    downsample = Config.load(config_file("downsample_ml"))
    assert downsample.subsampling.resolution is not None and downsample.subsampling.cuts_are_clips
    flow = Config.load(config_file("optical_flow")).subsampling.optical_flow
    assert flow is not None and (flow.fps, flow.downsample_size, flow.dtype) == (2, 16, "fp16")


def test_the_caption_config_names_the_feature_v2d_has_no_engine_for() -> None:
    with pytest.raises(ConfigError, match="CaptionSubsampler: v2d has no engine for captioning") as error:
        Config.load(config_file("caption"))
    assert "unknown" not in str(error.value)
    with pytest.raises(ConfigError, match="stage 'caption': v2d has no engine for captioning"):
        JobConfig(url_list="dataset", input_format="webdataset", stage="caption")


def test_default_downloads_the_served_video(downloaded: Path) -> None:
    members = tar_members(downloaded / "00000.tar")
    assert sorted(members) == ["00000000.json", "00000000.mp4", "00000000.txt"]
    assert json.loads(members["00000000.json"])["status"] == "success"


def test_downsample_ml_cuts_scenes_into_224px_5fps_clips(downloaded: Path, tmp_path: Path) -> None:
    summary = video2dataset(
        url_list=str(downloaded),
        input_format="webdataset",
        stage="subset",
        output_folder=str(tmp_path / "downsampled"),
        output_format="webdataset",
        config=config_file("downsample_ml"),
        show_progress=False,
    )
    assert not summary.failed_shards
    members = tar_members(tmp_path / "downsampled" / "00000.tar")
    clips = sorted(name for name in members if name.endswith(".mp4"))
    assert clips == ["00000000_00000.mp4", "00000000_00001.mp4"]  # the cut at 5 s: two 5 s clips
    for clip in clips:
        with av.open(io.BytesIO(members[clip])) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (224, 224)
            assert stream.average_rate == 5


def test_optical_flow_takes_rate_and_size_from_dataloader_args(downloaded: Path, tmp_path: Path) -> None:
    summary = video2dataset(
        url_list=str(downloaded),
        input_format="webdataset",
        stage="optical_flow",
        output_folder=str(tmp_path / "flow"),
        output_format="webdataset",
        config=config_file("optical_flow"),
        show_progress=False,
    )
    assert not summary.failed_shards
    members = tar_members(tmp_path / "flow" / "00000.tar")
    flow = np.load(io.BytesIO(members["00000000.npy"]))
    assert flow.dtype == np.float16 and min(flow.shape[1:3]) == 16  # resize_size: 16
    assert flow.shape[0] in (18, 19)  # 10 s at decoder_kwargs.fps 2: 19 or 20 frames, one flow between two
    record = json.loads(members["00000000.json"])
    assert (record["optical_flow_fps"], record["optical_flow_downsample_size"]) == (2, 16)


def test_dataloader_args_that_contradict_the_flow_args_are_an_error() -> None:
    flow = {"OpticalFlowSubsampler": {"args": {"fps": 5}}}
    loader = {"resize_size": 16, "decoder_kwargs": {"fps": 2}}
    with pytest.raises(ConfigError, match=r"OpticalFlowSubsampler\.fps 5"):
        Config.from_mapping({"subsampling": flow, "reading": {"dataloader_args": loader}})
    with pytest.raises(ConfigError, match="decoder_kwargs: frame_count"):
        Config.from_mapping({"reading": {"dataloader_args": {"decoder_kwargs": {"frame_count": 8}}}})
