"""The dataloader on a dataset v2d itself writes: generated videos served on 127.0.0.1, downloaded once."""

from __future__ import annotations

import csv
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
import webdataset as wds

from tests.hostile_media import gray_jpeg, mjpeg_mp4, small_jpeg
from v2d_core import video2dataset
from v2d_core.dataloader import get_video_dataset
from v2d_core.dataloader.sampling import scenes_in_frames
from v2d_core.errors import ConfigError, DecodeError
from v2d_core.testing.media import make_video
from v2d_core.testing.scenes import make_scene_video
from v2d_core.testing.server import MediaServer

FPS = 25
SCENES = [(0, 40), (40, 80), (80, 120)]  # three 1.6 s scenes; the middle one is plain red


@dataclass(frozen=True)
class Dataset:
    folder: Path
    members: dict[str, dict[str, bytes]]  # key -> extension -> bytes, read back from the tars

    def key_of(self, caption: str) -> str:
        return next(key for key, parts in self.members.items() if parts["txt"].decode() == caption)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Four 2 s clips and a three-scene video downloaded by v2d with cut detection, 3 samples per shard."""
    root = tmp_path_factory.mktemp("dataloader")
    media = root / "media"
    for index in range(4):
        make_video(media / f"plain_{index}.mp4", seconds=2.0, fps=FPS, audio=False)
    make_scene_video(
        media / "scenes.mp4",
        [("testsrc2", 1.6), ("color=c=red", 1.6), ("smptebars", 1.6)],
        fps=FPS,
        audio=False,
    )
    with MediaServer(media) as server:
        with (root / "urls.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["url", "caption"])
            for path in sorted(media.iterdir()):
                writer.writerow([server.url("files", path.name), path.stem])
        video2dataset(
            url_list=str(root / "urls.csv"),
            input_format="csv",
            caption_col="caption",
            output_folder=str(root / "dataset"),
            output_format="webdataset",
            config="cut_detection",
            number_sample_per_shard=3,
            processes_count=2,
            thread_count=2,
            show_progress=False,
        )
    members: dict[str, dict[str, bytes]] = {}
    for shard in sorted((root / "dataset").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                members.setdefault(key, {})[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    assert len(members) == 5
    return Dataset(root / "dataset", members)


def reference_frames(data: bytes) -> list[np.ndarray]:
    """Every frame of the video, decoded front to back with PyAV alone."""
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def samples(dataset: wds.DataPipeline) -> list[dict]:
    """The batches unrolled into per-sample dicts (arrays indexed, lists picked)."""
    rows = []
    for batch in dataset:
        for index in range(len(batch["__key__"])):
            rows.append({key: value[index] for key, value in batch.items()})
    return rows


def test_batches_have_the_asked_shape_and_every_sample_once(dataset: Dataset) -> None:
    loader = get_video_dataset(
        f"{dataset.folder}/{{00000..00001}}.tar",
        batch_size=2,
        decoder_kwargs={"n_frames": 8},
        resize_size=60,
        crop_size=(48, 64),
    )
    batches = list(loader)
    assert [len(batch["__key__"]) for batch in batches] == [2, 2, 1]
    for batch in batches:
        assert batch["mp4"].dtype == np.uint8
        assert batch["mp4"].shape == (len(batch["__key__"]), 8, 48, 64, 3)
        assert batch["original_height"].tolist() == [[120] * 8] * len(batch["__key__"])
        assert (batch["pad_masks"] == 1).all()
    rows = [row for batch in batches for row in zip(batch["__key__"], batch["txt"], strict=True)]
    assert sorted(rows) == sorted((key, parts["txt"].decode()) for key, parts in dataset.members.items())
    dropped = get_video_dataset(
        str(dataset.folder), batch_size=2, drop_last=True, decoder_kwargs={"n_frames": 8}
    )
    assert [len(batch["__key__"]) for batch in dropped] == [2, 2]


def test_fps_takes_every_nth_source_frame(dataset: Dataset) -> None:
    loader = get_video_dataset(str(dataset.folder), batch_size=5, decoder_kwargs={"n_frames": 6, "fps": 5})
    rows = samples(loader)
    assert len(rows) == 5
    for row in rows:
        stride = FPS // 5
        assert row["native_fps"] == 5
        assert np.allclose(np.diff(row["frame_timestamps"]), stride / FPS)
        source = reference_frames(dataset.members[row["__key__"]]["mp4"])
        wanted = [row["start_frame"] + stride * k for k in range(6)]
        assert wanted[-1] < len(source)
        assert np.allclose(row["frame_timestamps"], np.array(wanted) / FPS)
        for frame, index in zip(row["mp4"], wanted, strict=True):
            assert np.array_equal(frame, source[index]), (row["__key__"], index)


def test_uniformly_sample_spreads_frames_over_the_whole_video(dataset: Dataset) -> None:
    loader = get_video_dataset(
        str(dataset.folder), batch_size=5, decoder_kwargs={"n_frames": 5, "uniformly_sample": True}
    )
    for row in samples(loader):
        source = reference_frames(dataset.members[row["__key__"]]["mp4"])
        wanted = np.linspace(0, len(source) - 1, 5).astype(int)
        assert np.allclose(row["frame_timestamps"], wanted / FPS)
        assert all(np.array_equal(frame, source[i]) for frame, i in zip(row["mp4"], wanted, strict=True))


def test_fps_choices_and_sampled_rates(dataset: Dataset) -> None:
    choices = samples(get_video_dataset(str(dataset.folder), batch_size=5, decoder_kwargs={"fps": [50, 5]}))
    assert {(row["native_fps"], row["fps_id"][0]) for row in choices} == {(5.0, 1)}  # 50 fps is above 25
    random.seed(1)
    sampled = samples(
        get_video_dataset(
            str(dataset.folder),
            batch_size=1,
            repeat=4,
            decoder_kwargs={"n_frames": 3, "fps": "sample", "min_fps": 2, "max_fps": 4},
        )
    )
    for row in sampled:
        assert row["native_fps"] in {2, 3, 4} and (row["fps_id"] == row["native_fps"] - 2).all()
        assert np.allclose(np.diff(row["frame_timestamps"]), round(FPS / row["native_fps"]) / FPS)
    assert len({row["native_fps"] for row in sampled}) > 1
    too_fast = get_video_dataset(str(dataset.folder), batch_size=1, decoder_kwargs={"fps": 50})
    with pytest.raises(DecodeError, match="below every requested rate"):
        next(iter(too_fast))


def test_resize_then_center_or_random_crop(dataset: Dataset) -> None:
    def load(**options: object) -> dict[str, np.ndarray]:
        loader = get_video_dataset(
            str(dataset.folder),
            batch_size=1,
            decoder_kwargs={"n_frames": 4, "uniformly_sample": True},
            **options,
        )
        return {row["__key__"]: row["mp4"] for row in samples(loader)}

    full = load(resize_size=60)
    assert {frames.shape for frames in full.values()} == {(4, 60, 80, 3)}
    assert {frames.shape for frames in load(resize_size=(50, 70)).values()} == {(4, 50, 70, 3)}
    centered = load(resize_size=60, crop_size=40)
    assert all(np.array_equal(centered[key], full[key][:, 10:50, 20:60]) for key in full)
    random.seed(3)
    offsets = set()
    for key, crop in load(resize_size=60, crop_size=40, random_crop=True).items():
        found = [
            (top, left)
            for top in range(21)
            for left in range(41)
            if np.array_equal(crop, full[key][:, top : top + 40, left : left + 40])
        ]
        assert found, key  # the same window of every frame
        offsets.add(found[0])
    assert len(offsets) > 1
    with pytest.raises(DecodeError, match="crop_size 200x200 is larger than the 120x160 frames"):
        load(crop_size=200)


def test_clips_lie_inside_one_scene_of_the_cut_list(dataset: Dataset) -> None:
    scenes_key = dataset.key_of("scenes")
    record = json.loads(dataset.members[scenes_key]["json"])
    assert record["cuts"]["cuts_original_fps"] == [list(scene) for scene in SCENES]
    random.seed(5)
    loader = get_video_dataset(str(dataset.folder), batch_size=1, repeat=12, decoder_kwargs={"n_frames": 12})
    windows = [row for row in samples(loader) if row["__key__"] == scenes_key]
    assert len(windows) == 12
    used = set()
    for row in windows:
        start, end = row["start_frame"], row["start_frame"] + 12
        scene = next(i for i, (low, high) in enumerate(SCENES) if low <= start < high)
        assert end <= SCENES[scene][1], (start, SCENES)
        red = [bool(f[..., 0].mean() > 200 and f[..., 1].mean() < 60) for f in row["mp4"]]
        assert red == [scene == 1] * 12  # the frames themselves: all of the red scene, or none
        used.add(scene)
    assert len(used) > 1


def test_a_clip_longer_than_every_scene_is_an_error_skipped_or_padded(dataset: Dataset) -> None:
    scenes_key = dataset.key_of("scenes")
    options = {"batch_size": 5, "decoder_kwargs": {"n_frames": 45}}
    with pytest.raises(DecodeError, match=f"sample {scenes_key} .*longest scene has 40"):
        list(get_video_dataset(str(dataset.folder), **options))  # type: ignore[arg-type]
    skipped = samples(get_video_dataset(str(dataset.folder), handler=wds.ignore_and_continue, **options))  # type: ignore[arg-type]
    assert sorted(row["__key__"] for row in skipped) == sorted(set(dataset.members) - {scenes_key})
    padded = get_video_dataset(
        str(dataset.folder), batch_size=5, decoder_kwargs={"n_frames": 45, "pad_frames": True}
    )
    row = next(row for row in samples(padded) if row["__key__"] == scenes_key)
    assert row["pad_masks"].sum() == 40 and row["mp4"].shape[0] == 45
    assert not row["mp4"][40:].any() and np.isnan(row["frame_timestamps"][40:]).all()


def test_scene_lists_follow_clips_and_frame_rate_changes() -> None:
    cuts = {"original_fps": 30.0, "cuts_original_fps": [[0, 90], [90, 300]]}  # 10 s, a cut at 3 s
    assert scenes_in_frames({"cuts": cuts}, fps=15.0, frame_count=150) == [(0, 45), (45, 150)]
    clip = {"cuts": cuts, "original_key": "00000", "clips": [["00:00:02.000", 5.0]]}  # 3 s clip at 10 fps
    assert scenes_in_frames(clip, fps=10.0, frame_count=30) == [(0, 10), (10, 30)]
    assert scenes_in_frames({"cuts": {}}, fps=10.0, frame_count=30) is None


def broken_shard(dataset: Dataset, path: Path) -> Path:
    """A tar with good samples, an mp4 member that is not a video, and a sample without caption."""
    good = next(iter(dataset.members.values()))
    parts = [
        ("a_good.mp4", good["mp4"]),
        ("a_good.txt", b"first"),
        ("b_broken.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(4000)),
        ("b_broken.txt", b"broken"),
        ("c_good.mp4", good["mp4"]),
        ("c_good.txt", b"second"),
        ("d_no_caption.mp4", good["mp4"]),
    ]
    with tarfile.open(path, "w") as tar:
        for name, data in parts:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_corrupted_samples_raise_are_skipped_or_flagged(dataset: Dataset, tmp_path: Path) -> None:
    shard = str(broken_shard(dataset, tmp_path / "00000.tar"))
    decoder = {"n_frames": 4}
    with pytest.raises(DecodeError, match=r"sample b_broken of .*00000\.tar"):
        list(get_video_dataset(shard, batch_size=4, decoder_kwargs=decoder))
    skipped = get_video_dataset(shard, batch_size=4, decoder_kwargs=decoder, handler=wds.ignore_and_continue)
    assert [batch["__key__"] for batch in skipped] == [["a_good", "c_good"]]
    with pytest.warns(UserWarning, match="b_broken"):
        warned = get_video_dataset(shard, batch_size=4, decoder_kwargs=decoder, handler=wds.warn_and_continue)
        assert [batch["__key__"] for batch in warned] == [["a_good", "c_good"]]
    (batch,) = get_video_dataset(shard, batch_size=4, decoder_kwargs=decoder, return_always=True)
    assert batch["__key__"] == ["a_good", "b_broken", "c_good", "d_no_caption"]
    assert batch["__corrupted__"].tolist() == [False, True, False, True]
    assert batch["mp4"].shape == (4, 4, 120, 160, 3)  # flagged rows hold a good sample's frames
    assert batch["__error__"][0] is None and "b_broken" in batch["__error__"][1]
    assert "txt" in batch["__error__"][3]


def test_without_decoder_arguments_samples_come_unbatched_with_their_bytes(dataset: Dataset) -> None:
    raw = list(get_video_dataset(str(dataset.folder), batch_size=2, repeat=2, shuffle=10))
    assert sorted(sample["__key__"] for sample in raw) == sorted(list(dataset.members) * 2)
    for sample in raw:
        parts = dataset.members[sample["__key__"]]
        assert sample["mp4"] == parts["mp4"] and sample["txt"] == parts["txt"].decode()
        assert sample["json"]["key"] == sample["__key__"]
    kept = samples(
        get_video_dataset(
            str(dataset.folder), batch_size=5, decoder_kwargs={"n_frames": 2, "return_bytes": True}
        )
    )
    assert all(row["video_bytes"] == dataset.members[row["__key__"]]["mp4"] for row in kept)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"decoder_kwargs": {"frames": 8}}, "unknown decoder_kwargs \\['frames'\\]"),
        ({"decoder_kwargs": {"n_frames": 4, "fps": 5, "uniformly_sample": True}}, "uniformly_sample"),
        ({"decoder_kwargs": {"fps": "fast"}}, "fps must be"),
        ({"resize_size": (10, 0)}, "resize_size must be"),
        ({"batch_size": 0}, "batch_size"),
        ({"repeat": 0}, "repeat must be"),
        ({"urls": "/nonexistent/folder"}, "neither a tar shard nor a folder"),
    ],
)
def test_bad_arguments_are_clear_errors(dataset: Dataset, options: dict, message: str) -> None:
    arguments = {"urls": str(dataset.folder), "batch_size": 2, **options}
    with pytest.raises(ConfigError, match=message):
        get_video_dataset(**arguments)


def test_torch_dataloader_with_two_workers(dataset: Dataset) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch to run this test)")
    loader = get_video_dataset(
        str(dataset.folder), batch_size=2, decoder_kwargs={"n_frames": 8, "num_threads": 1}, resize_size=60
    )
    batches = list(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=2))
    keys = [key for batch in batches for key in batch["__key__"]]
    assert sorted(keys) == sorted(dataset.members)  # the two shards went to different workers, once each
    for batch in batches:
        assert isinstance(batch["mp4"], torch.Tensor) and batch["mp4"].dtype == torch.uint8
        assert tuple(batch["mp4"].shape) == (len(batch["__key__"]), 8, 60, 80, 3)


def test_a_frame_over_max_pixels_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    """A 12000x12000 JPEG frame stored in a few hundred kB would decode to 432 MB of RGB."""
    bomb = mjpeg_mp4(tmp_path / "bomb.mp4", [gray_jpeg(small_jpeg(tmp_path), 12000)]).read_bytes()
    folder = tmp_path / "dataset"
    folder.mkdir()
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for name, data in (("000000.mp4", bomb), ("000000.txt", b"bomb")):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    options = {"batch_size": 1, "decoder_kwargs": {"n_frames": 1}}
    with pytest.raises(DecodeError, match=r"12000x12000 \(144000000 pixels\), over max_pixels \(67108864\)"):
        list(get_video_dataset(str(folder), **options))  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"over max_pixels \(1000\)"):
        list(get_video_dataset(str(folder), batch_size=1, decoder_kwargs={"n_frames": 1, "max_pixels": 1000}))
