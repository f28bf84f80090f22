"""The examples run as a user runs them, so they cannot rot: the worked dataset, then the loader on it."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def tar_members(folder: Path) -> dict[str, bytes]:
    members = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                members[member.name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return members


def test_worked_dataset_then_the_dataloader_example(tmp_path: Path) -> None:
    output = tmp_path / "worked"
    printed = run_example(
        "worked_dataset.py", "--output_folder", str(output), "--videos", "1", "--processes", "1"
    )
    assert "download: 1 of 1 samples" in printed
    assert "downsample: 1 of 1 samples" in printed
    assert "optical_flow: 2 of 2 samples" in printed  # the video's two scenes became two clips
    clips = tar_members(output / "downsample")
    assert sorted(name for name in clips if name.endswith(".mp4")) == [
        "000000_00000.mp4",
        "000000_00001.mp4",
    ]
    with av.open(io.BytesIO(clips["000000_00000.mp4"])) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height, stream.average_rate) == (224, 224, 5)
    flow = tar_members(output / "optical_flow")
    assert sorted({name.partition(".")[2] for name in flow}) == ["json", "npy", "txt"]  # no video
    array = np.load(io.BytesIO(flow["000000_00000.npy"]))
    assert array.ndim == 4 and array.shape[-1] == 2
    assert "batch: mp4 (2, 8, 224, 224, 3) uint8" in printed

    loaded = run_example("dataloader.py", str(output / "downsample"), "--workers", "1")
    # [B, C, T, H, W] float tensors with torch, the loader's [B, T, H, W, C] uint8 arrays without
    assert re.search(r"step 0: video \(2, (3, 8, 224, 224\) torch.float32|8, 224, 224, 3\) uint8)", loaded)
    assert "two scenes, video 0" in loaded
