"""video2dataset's examples/ (tests/video2dataset_1_3_0/examples, verbatim) run unchanged on a stand-in.

The stand-in is WebVid-shaped: ``results_2M_val.csv`` with WebVid's columns, its videos served on
127.0.0.1. It has 4001 rows so that the download fills the five shards ``{00000..00004}`` the
later examples read (1000 rows a shard in the default config): one real 10 s video (two 5 s
scenes) heads each shard, the other rows are dead links, as many of WebVid's are. The scripts
run as they are with bash: ``wget -nc`` finds the csv already there and fetches nothing.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from tests.helpers import serving_folder
from v2d_core.api import video2dataset
from v2d_core.testing.scenes import make_scene_video
from v2d_core.testing.server import MediaServer

EXAMPLES = Path(__file__).parent / "video2dataset_1_3_0" / "examples"
SHARDS = 5
PER_SHARD = 1000  # video2dataset's default config


def run_example(folder: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, V2D_ALLOW_PRIVATE_NETWORKS="1", WANDB_MODE="offline")  # --enable_wandb=True
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=280)


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def write_webvid_csv(path: Path, server: MediaServer) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "contentUrl", "duration", "page_idx", "page_dir", "name"])
        for row in range(PER_SHARD * (SHARDS - 1) + 1):
            alive = row % PER_SHARD == 0
            url = (
                server.url("files", f"scenes.mp4?row={row}")
                if alive
                else server.url("status/404", f"{row}.mp4")
            )
            writer.writerow(
                [1000 + row, url, "PT00H00M10S", row // 50, f"{row // 50:03d}_{row // 1000}", f"clip {row}"]
            )


@pytest.fixture(scope="module")
def webvid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder download_webvid.sh ran in, with its ``dataset/``."""
    folder = tmp_path_factory.mktemp("webvid")
    media = folder / "media"
    make_scene_video(
        media / "scenes.mp4", [("testsrc2", 5.0), ("smptebars", 5.0)], width=192, height=108, gop=25
    )
    with MediaServer(media) as server:
        write_webvid_csv(folder / "results_2M_val.csv", server)
        done = run_example(folder, "bash", str(EXAMPLES / "download_webvid.sh"))
    assert done.returncode == 0, done.stdout + done.stderr
    yield folder


def test_download_webvid(webvid: Path) -> None:
    tars = sorted(path.name for path in (webvid / "dataset").glob("*.tar"))
    assert tars == [f"{shard:05d}.tar" for shard in range(SHARDS)]  # --output-format="webdataset"
    members = tar_members(webvid / "dataset" / "00002.tar")
    assert sorted(members) == ["00002000.json", "00002000.mp4", "00002000.txt"]
    assert members["00002000.txt"] == b"clip 2000"  # --caption_col="name"
    record = json.loads(members["00002000.json"])
    assert {key: record[key] for key in ("videoid", "page_idx", "page_dir", "duration")} == {
        "videoid": 3000,
        "page_idx": 40,
        "page_dir": "040_2",
        "duration": "PT00H00M10S",
    }
    stats = json.loads((webvid / "dataset" / "00002_stats.json").read_text())
    assert (stats["count"], stats["successes"]) == (PER_SHARD, 1)
    assert list((webvid / "wandb").glob("offline-run-*"))  # --enable_wandb=True


def test_downsample_webvid(webvid: Path) -> None:
    done = run_example(webvid, "bash", str(EXAMPLES / "downsample_webvid.sh"))
    assert done.returncode == 0, done.stdout + done.stderr
    members = tar_members(webvid / "dataset_downsampled" / "00004.tar")
    clips = sorted(name for name in members if name.endswith(".mp4"))
    assert clips == ["00004000_00000.mp4", "00004000_00001.mp4"]  # downsample_ml: a clip per scene
    with av.open(io.BytesIO(members[clips[0]])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height, stream.average_rate) == (224, 224, 5)


def test_optical_flow_webvid(webvid: Path) -> None:
    done = run_example(webvid, "bash", str(EXAMPLES / "optical_flow_webvid.sh"))
    assert done.returncode == 0, done.stdout + done.stderr
    members = tar_members(webvid / "dataset_optical_flow" / "00001.tar")
    assert sorted(members) == ["00001000.json", "00001000.npy", "00001000.txt"]  # encode_formats: npy only
    flow = np.load(io.BytesIO(members["00001000.npy"]))
    assert flow.shape[-1] == 2 and min(flow.shape[1:3]) == 16


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="dataloader_example.py hands the dataset to webdataset.WebLoader, a torch DataLoader: needs torch",
)
def test_dataloader_example(webvid: Path) -> None:
    done = run_example(webvid, sys.executable, str(EXAMPLES / "dataloader_example.py"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "torch.Size([5, 8, 256, 256, 3])"  # one batch: the 5 videos


def test_a_flag_1_3_0_does_not_have_is_refused_naming_it(tmp_path: Path) -> None:
    done = run_example(
        tmp_path, "video2dataset", "--url_list=x.csv", "--video_height=360", "--video_width=640"
    )
    assert done.returncode == 2
    assert "unknown option 'video_height'" in done.stderr
    assert not (tmp_path / "dataset").exists()


@pytest.fixture(scope="module")
def subtitled_page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A page with a 2 s <video> and an English WebVTT <track> of two cues, served on 127.0.0.1."""
    root = tmp_path_factory.mktemp("site")
    make_scene_video(root / "talk.mp4", [("testsrc2", 1.0), ("smptebars", 1.0)], gop=25)
    (root / "talk.en.vtt").write_text(
        "WEBVTT\n\n00:00.000 --> 00:01.000\nGood morning Lisa\n\n00:01.000 --> 00:02.000\nanalytics\n"
    )
    (root / "watch.html").write_text(
        "<html><head><title>IBM SPSS</title></head><body><video controls>"
        '<source src="talk.mp4" type="video/mp4">'
        '<track kind="subtitles" src="talk.en.vtt" srclang="en"></video></body></html>'
    )
    with serving_folder(root) as base:
        yield f"{base}/watch.html"


def yt_metadata_yaml() -> dict:
    """The ``yt_args`` block of yt_metadata.md, as its text gives it."""
    text = (EXAMPLES / "yt_metadata.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


@pytest.mark.parametrize("metadata_args", ["yt_metadata.md", None])
def test_yt_metadata_subtitles_become_clips_and_captions(
    subtitled_page: str, tmp_path: Path, metadata_args: str | None
) -> None:
    yt_args = yt_metadata_yaml()["yt_args"]
    if metadata_args is None:  # captions_are_subtitles alone turns subtitle fetching on, as in 1.3.0
        yt_args["yt_metadata_args"] = None
    (tmp_path / "videos.csv").write_text(f"url\n{subtitled_page}\n")
    summary = video2dataset(
        url_list=str(tmp_path / "videos.csv"),
        output_folder=str(tmp_path / "dataset"),
        output_format="webdataset",
        config={"reading": {"yt_args": yt_args}, "storage": {"captions_are_subtitles": True}},
        processes_count=1,
        show_progress=False,
    )
    assert not summary.failed_shards
    members = tar_members(tmp_path / "dataset" / "00000.tar")
    assert sorted(name for name in members if name.endswith(".mp4")) == [
        "00000000_00000.mp4",
        "00000000_00001.mp4",
    ]
    assert members["00000000_00001.txt"] == b"analytics"
    record = json.loads(members["00000000_00000.json"])
    assert record["status"] == "success"
    assert record["yt_meta_dict"]["subtitles"]["en"][0]["lines"] == ["Good morning Lisa"]
    if metadata_args:
        assert record["yt_meta_dict"]["info"]["title"].startswith("IBM SPSS")  # get_info: True
