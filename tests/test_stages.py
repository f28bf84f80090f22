"""Re-processing stages: subset and optical_flow read tars v2d wrote and keep shard ids and keys."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers import stats, status_rows
from v2d_core import video2dataset
from v2d_core.errors import ConfigError
from v2d_core.shards.tar_source import open_tar
from v2d_core.testing.media import make_video
from v2d_core.testing.server import MediaServer

FAST = {"processes_count": 2, "thread_count": 4, "show_progress": False, "timeout": 5, "retry_backoff": 0.01}


def run_stage(**options: object) -> None:
    """``video2dataset`` over a webdataset: the subset stage to webdataset tars, with FAST, unless
    ``options`` say otherwise."""
    video2dataset(
        **{"input_format": "webdataset", "stage": "subset", "output_format": "webdataset", **FAST, **options}
    )


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory: pytest.TempPathFactory, media_server: MediaServer) -> Path:
    """Shards 00000 and 00001 (3 + 2 samples, one failed url) of 160x120 25 fps videos."""
    folder = tmp_path_factory.mktemp("downloaded")
    urls = [media_server.url("files", f"video_000{i % 4}.mp4") for i in range(4)]
    urls.insert(1, media_server.url("status/404", "gone.mp4"))
    (folder / "urls.txt").write_text("\n".join(urls) + "\n")
    video2dataset(
        url_list=str(folder / "urls.txt"),
        input_format="txt",
        output_folder=str(folder / "out"),
        output_format="webdataset",
        number_sample_per_shard=3,
        **FAST,
    )
    return folder / "out"


def tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def video_shape(data: bytes) -> tuple[int, int, float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height, float(stream.average_rate)


def test_subset_resizes_and_keeps_shard_ids_and_keys(tmp_path: Path, downloaded: Path) -> None:
    config = {
        "subsampling": {
            "ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale"}},
            "FrameSubsampler": {"args": {"frame_rate": 5}},
        }
    }
    output = tmp_path / "subset"
    run_stage(
        url_list=str(downloaded),
        output_folder=str(output),
        config=config,
    )
    assert sorted(stats(output)) == ["00000", "00001"]
    before = {row["key"] for row in status_rows(downloaded) if row["status"] == "success"}
    after = {row["key"]: row for row in status_rows(output)}
    assert set(after) == before
    assert all(row["status"] == "success" for row in after.values())
    members = tar_members(output / "00001.tar")
    assert sorted(members) == sorted(f"00001{i}.{e}" for i in (0, 1) for e in ("json", "mp4", "txt"))
    width, height, fps = video_shape(members["000010.mp4"])
    assert (min(width, height), fps) == (64, 5.0)
    record = json.loads(members["000010.json"])
    assert record["url"].endswith("video_0002.mp4")


def test_subset_with_no_encode_formats_keeps_only_metadata(tmp_path: Path, downloaded: Path) -> None:
    output = tmp_path / "meta"
    run_stage(
        url_list=f"{downloaded}/{{00000..00001}}.tar",
        encode_formats={},
        output_folder=str(output),
    )
    names = sorted(tar_members(output / "00000.tar"))
    assert names == ["000000.json", "000000.txt", "000002.json", "000002.txt"]


def test_optical_flow_stage_writes_flow_shards_with_the_same_ids(tmp_path: Path, downloaded: Path) -> None:
    output = tmp_path / "flow"
    run_stage(
        url_list=str(downloaded),
        stage="optical_flow",
        output_folder=str(output),
        config="optical_flow",
    )
    members = tar_members(output / "00000.tar")
    assert sorted(members) == sorted(f"00000{i}.{e}" for i in (0, 2) for e in ("json", "npy", "txt"))
    flow = np.load(io.BytesIO(members["000000.npy"]))
    assert flow.ndim == 4 and flow.shape[-1] == 2
    record = json.loads(members["000000.json"])
    assert record["mean_optical_flow_magnitude"] > 0


def test_hostile_member_names_become_failed_rows_and_write_nothing_outside(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=0.5)
    source = tmp_path / "in"
    source.mkdir()
    with tarfile.open(source / "00007.tar", "w") as tar:
        tar.add(video, arcname="../../escape.mp4")
        tar.add(video, arcname="/abs/olute.mp4")
        tar.add(video, arcname="00007000.mp4")
    output = tmp_path / "nested" / "out"
    for output_format in ("files", "webdataset"):
        run_stage(
            url_list=str(source),
            output_folder=str(output / output_format),
            output_format=output_format,
        )
        rows = {row["key"]: row for row in status_rows(output / output_format)}
        assert rows["00007000"]["status"] == "success"
        failed = [row for key, row in rows.items() if key != "00007000"]
        assert len(failed) == 2 and all("unsafe" in row["error_message"] for row in failed)
    assert not (tmp_path / "escape.mp4").exists() and not (tmp_path / "nested" / "escape.mp4").exists()
    assert not Path("/abs").exists()


def test_stage_and_input_format_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="webdataset"):
        video2dataset(url_list=str(tmp_path), stage="subset", output_folder=str(tmp_path / "o"))


def test_a_transform_failure_is_a_failed_to_subsample_row_with_the_reason(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", seconds=0.5)
    source = tmp_path / "in"
    source.mkdir()
    with tarfile.open(source / "00003.tar", "w") as tar:
        tar.add(video, arcname="000030.mp4")
        garbage = tmp_path / "garbage.mp4"
        garbage.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40)
        tar.add(garbage, arcname="000031.mp4")
    output = tmp_path / "out"
    run_stage(
        url_list=str(source),
        output_folder=str(output),
        config={
            "subsampling": {"ResolutionSubsampler": {"args": {"video_size": 32, "resize_mode": "scale"}}}
        },
    )
    rows = {row["key"]: row for row in status_rows(output)}
    assert rows["000030"]["status"] == "success"
    assert rows["000031"]["status"] == "failed_to_subsample"
    assert rows["000031"]["error_message"]
    assert stats(output)["00003"]["failed_to_subsample"] == 1
    assert sorted(tar_members(output / "00003.tar")) == ["000030.json", "000030.mp4", "000030.txt"]


def test_a_truncated_input_tar_keeps_the_samples_before_the_damage(tmp_path: Path, media_dir: Path) -> None:
    source = tmp_path / "input"
    source.mkdir()
    tar_path = source / "00007.tar"
    with tarfile.open(tar_path, "w") as tar:
        for index in range(3):
            key = f"00007{index:02d}"
            for name, data in (
                (f"{key}.mp4", (media_dir / f"video_000{index}.mp4").read_bytes()),
                (f"{key}.json", json.dumps({"key": key, "url": f"http://x/{index}.mp4"}).encode()),
            ):
                member = tarfile.TarInfo(name)
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    with tarfile.open(tar_path) as tar:
        last_video = tar.getmember("0000702.mp4")
    whole = tar_path.read_bytes()
    tar_path.write_bytes(whole[: last_video.offset_data + last_video.size // 2])  # cut inside the last video
    output = tmp_path / "subset"
    run_stage(
        url_list=str(source),
        output_folder=str(output),
    )
    rows = {row["key"]: row for row in status_rows(output)}
    assert {key: row["status"] for key, row in rows.items()} == {
        "0000700": "success",
        "0000701": "success",
        "0000702": "failed_to_download",
    }
    assert f"input tar {tar_path} breaks near byte" in rows["0000702"]["error_message"]
    assert sorted({name.partition(".")[0] for name in tar_members(output / "00007.tar")}) == [
        "0000700",
        "0000701",
    ]
    assert stats(output)["00007"]["count"] == 3


@pytest.mark.parametrize("compression", ["plain", "gzip", "xz"])
def test_a_stage_without_transforms_copies_each_input_member_byte_for_byte(
    tmp_path: Path, downloaded: Path, compression: str
) -> None:
    """A plain tar's members are copied by the kernel, a compressed one's through the stream:
    either way the subset stage writes the input videos unchanged."""
    source = tmp_path / "input"
    source.mkdir()
    data = (downloaded / "00000.tar").read_bytes()
    compress = {"plain": bytes, "gzip": gzip.compress, "xz": lzma.compress}[compression]
    (source / "00000.tar").write_bytes(compress(data))
    output = tmp_path / "subset"
    run_stage(
        url_list=str(source),
        output_folder=str(output),
        config={"subsampling": {}},
    )
    written = tar_members(output / "00000.tar")
    videos = {
        name: body for name, body in tar_members(downloaded / "00000.tar").items() if name.endswith(".mp4")
    }
    assert len(videos) == 2
    assert {name: written[name] for name in videos} == videos


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar writes the sparse member")
def test_a_sparse_member_of_a_plain_tar_is_copied_with_its_holes(tmp_path: Path) -> None:
    """A sparse member's data is not one byte range of the tar: it is expanded, not copied raw."""
    original = tmp_path / "0000100.mp4"
    with original.open("wb") as handle:
        handle.write(b"head")
        handle.seek(1 << 20)
        handle.write(b"tail")
    tar_path = tmp_path / "00001.tar"
    subprocess.run(["tar", "--sparse", "-cf", str(tar_path), "-C", str(tmp_path), original.name], check=True)
    copy = tmp_path / "copy"
    with open_tar(str(tar_path)) as source, copy.open("wb") as sink:
        (member,) = list(source.tar)
        assert member.issparse()
        source.copy(member, sink)
    assert copy.read_bytes() == original.read_bytes()
