"""Cut detection and optical flow from one decode of the source (issue 17.2), against the flow of
each clip computed after clipping, on generated videos whose cut frames are known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from v2d_core.config import Config
from v2d_core.errors import SubsampleError, SubsampleTimeoutError
from v2d_core.job import JobConfig
from v2d_core.sample import Sample
from v2d_core.subsamplers.chain import apply_subsamplers, build_subsamplers
from v2d_core.subsamplers.cut_detection import CutDetectionSubsampler, detect_cuts
from v2d_core.subsamplers.cuts_and_flow import CutsAndFlowSubsampler
from v2d_core.subsamplers.optical_flow import OpticalFlowSubsampler
from v2d_core.subsamplers.settings import ClippingArgs, CutDetectionArgs, OpticalFlowArgs
from v2d_core.subsamplers.transcode import TranscodeSubsampler
from v2d_core.testing.scenes import make_scene_video

FPS = 25
SIDEWAYS = "testsrc,scroll=horizontal=0.01"  # the picture moves 1.6 px a frame at 160 px wide
# cuts at frames 50 and 100: both on the 5 fps analysis ticks (every 5th frame) and on keyframes
ON_TICKS = [(SIDEWAYS, 2.0), ("color=c=red", 2.0), ("smptebars,scroll=vertical=0.02", 2.0)]
# a cut at frame 53 (2.12 s): off the ticks, and inside a group of pictures
OFF_TICKS = [("color=c=red", 2.12), (SIDEWAYS, 1.88)]
FLOW = {"fps": 5, "downsample_size": 30, "dtype": "fp32"}
TOLERANCE = 0.05  # mean flow magnitude of a clip, shared decode against flow after clipping


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cuts_and_flow")
    return {
        "on_ticks": make_scene_video(folder / "on.mp4", ON_TICKS, fps=FPS, gop=FPS),
        "off_ticks": make_scene_video(folder / "off.mp4", OFF_TICKS, fps=FPS, gop=FPS),
    }


def chain_for(subsampling: dict[str, Any]) -> list[Any]:
    config = Config.from_mapping(
        {
            "subsampling": {
                "CutDetectionSubsampler": {"cuts_are_clips": True, "args": {}},
                "OpticalFlowSubsampler": {"args": FLOW},
                **subsampling,
            }
        }
    )
    return build_subsamplers(JobConfig(url_list="x", config=config))


def flow_after_clipping(path: Path, workdir: Path, clipping: ClippingArgs) -> list[Sample]:
    """The chain as it ran before the shared decode: cuts, then clips, then the flow of each clip."""
    chain = [
        CutDetectionSubsampler(CutDetectionArgs(), cuts_are_clips=True),
        TranscodeSubsampler(clipping=clipping),
        OpticalFlowSubsampler(OpticalFlowArgs(**FLOW)),  # type: ignore[arg-type]
    ]
    return apply_subsamplers(chain, sample(path), workdir)


def folder(parent: Path, name: str) -> Path:
    (parent / name).mkdir()
    return parent / name


def sample(path: Path) -> Sample:
    return Sample(key="00000", url=f"http://127.0.0.1/{path.name}", streams={"video": path})


def flows(clips: list[Sample]) -> list[np.ndarray]:
    return [np.load(clip.streams["optical_flow"]) for clip in clips]


def test_stream_copied_clips_get_the_flow_they_would_get_after_clipping(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    chain = chain_for({"ClippingSubsampler": {"args": {}}})
    assert [type(step) for step in chain] == [CutsAndFlowSubsampler]
    shared = apply_subsamplers(chain, sample(videos["on_ticks"]), folder(tmp_path, "shared"))
    before = flow_after_clipping(videos["on_ticks"], folder(tmp_path, "before"), ClippingArgs())
    assert [clip.key for clip in shared] == [clip.key for clip in before]
    assert [clip.metadata["clips"] for clip in shared] == [[[0.0, 2.0]], [[2.0, 4.0]], [[4.0, 6.0]]]
    # the cuts are those cut detection finds alone
    alone = detect_cuts(videos["on_ticks"], CutDetectionArgs())
    assert all(clip.metadata["cuts"] == alone == before[0].metadata["cuts"] for clip in shared)
    assert alone["cuts_original_fps"] == [[0, 50], [50, 100], [100, 150]]
    for ours, theirs in zip(flows(shared), flows(before), strict=True):
        assert ours.shape == theirs.shape == (9, 30, 40, 2)  # 10 frames at 5 fps, short side 30
        np.testing.assert_allclose(ours, theirs, atol=1e-4)  # the same frames: the clips are copies
    for key in ("mean_optical_flow_magnitude_per_frame", "optical_flow_fps", "optical_flow_dtype"):
        assert [clip.metadata[key] for clip in shared] == [clip.metadata[key] for clip in before]
    # no pair spans a cut: the still red scene has no motion, the others move 8 px a pair at 160 px
    sideways, red, _ = (clip.metadata["mean_optical_flow_magnitude"] for clip in shared)
    assert red < 0.05 and sideways == pytest.approx(8 * 40 / 160, rel=0.1)


def test_reencoded_clips_get_their_flow_within_the_tolerance(videos: dict[str, Path], tmp_path: Path) -> None:
    chain = chain_for({"ClippingSubsampler": {"args": {"precision": "exact"}}})
    shared = apply_subsamplers(chain, sample(videos["on_ticks"]), folder(tmp_path, "shared"))
    before = flow_after_clipping(
        videos["on_ticks"], folder(tmp_path, "before"), ClippingArgs(precision="exact")
    )
    for ours, theirs in zip(shared, before, strict=True):
        assert np.load(ours.streams["optical_flow"]).shape == np.load(theirs.streams["optical_flow"]).shape
        expected = theirs.metadata["mean_optical_flow_magnitude"]
        assert ours.metadata["mean_optical_flow_magnitude"] == pytest.approx(
            expected, rel=TOLERANCE, abs=0.02
        )


def test_a_clip_off_the_analysis_ticks_takes_the_sources_frames(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    # The source is decoded once, before clipping: its analysis frames are every 5th frame from
    # its start (0.0, 0.2 ... s). The second clip, [2.12, 4.0), holds those at 2.2 ... 3.8 s: 9
    # frames, 8 pairs; flow computed after clipping would start its own ticks at 2.12 s (10 frames).
    chain = chain_for({"ClippingSubsampler": {"args": {}}})
    red, sideways = apply_subsamplers(chain, sample(videos["off_ticks"]), folder(tmp_path, "shared"))
    assert sideways.metadata["clips"] == [[2.12, 4.0]]
    assert np.load(sideways.streams["optical_flow"]).shape == (8, 30, 40, 2)
    assert np.load(red.streams["optical_flow"]).shape == (10, 30, 40, 2)  # 0.0 ... 2.0 s: 11 frames
    before = flow_after_clipping(videos["off_ticks"], folder(tmp_path, "before"), ClippingArgs())
    assert np.load(before[1].streams["optical_flow"]).shape == (9, 30, 40, 2)
    expected = before[1].metadata["mean_optical_flow_magnitude"]
    assert sideways.metadata["mean_optical_flow_magnitude"] == pytest.approx(expected, rel=TOLERANCE)


def test_a_lower_frame_rate_is_shared_and_flow_runs_at_it(videos: dict[str, Path], tmp_path: Path) -> None:
    chain = chain_for(
        {
            "CutDetectionSubsampler": {"args": {}},
            "FrameSubsampler": {"args": {"frame_rate": 10}},
            "OpticalFlowSubsampler": {"args": {**FLOW, "fps": -1}},
        }
    )
    assert [type(step) for step in chain] == [CutsAndFlowSubsampler]
    (whole,) = apply_subsamplers(chain, sample(videos["on_ticks"]), tmp_path)
    assert whole.metadata["optical_flow_fps"] == 10.0
    assert np.load(whole.streams["optical_flow"]).shape == (59, 30, 40, 2)  # 6 s at 10 fps: 60 frames
    assert whole.metadata["cuts"]["cuts_original_fps"] == [[0, 50], [50, 100], [100, 150]]


def test_a_higher_frame_rate_takes_the_flow_of_the_transcoded_video(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    chain = chain_for(
        {
            "CutDetectionSubsampler": {"args": {}},
            "FrameSubsampler": {"args": {"frame_rate": 50}},
            "OpticalFlowSubsampler": {"args": {**FLOW, "fps": -1}},
        }
    )
    (whole,) = apply_subsamplers(chain, sample(videos["on_ticks"]), tmp_path)
    assert whole.metadata["optical_flow_fps"] == 50.0
    assert np.load(whole.streams["optical_flow"]).shape[0] == 299  # every frame repeated once
    assert whole.metadata["cuts"]["cuts_original_fps"] == [[0, 50], [50, 100], [100, 150]]


def test_a_resize_takes_the_flow_of_the_resized_clips(videos: dict[str, Path], tmp_path: Path) -> None:
    chain = chain_for(
        {
            "ResolutionSubsampler": {"args": {"video_size": 32, "resize_mode": "scale,crop,pad"}},
            "ClippingSubsampler": {"args": {}},
            "OpticalFlowSubsampler": {"args": {**FLOW, "downsample_size": None}},
        }
    )
    assert [type(step) for step in chain][-1] is OpticalFlowSubsampler
    clips = apply_subsamplers(chain, sample(videos["on_ticks"]), tmp_path)
    assert [np.load(clip.streams["optical_flow"]).shape for clip in clips] == [(9, 32, 32, 2)] * 3


def test_flow_without_clipping_is_the_flow_of_the_whole_video(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    config = Config.from_mapping(
        {"subsampling": {"CutDetectionSubsampler": {"args": {}}, "OpticalFlowSubsampler": {"args": FLOW}}}
    )
    chain = build_subsamplers(JobConfig(url_list="x", config=config))
    assert [type(step) for step in chain] == [CutsAndFlowSubsampler]
    (shared,) = apply_subsamplers(chain, sample(videos["on_ticks"]), folder(tmp_path, "shared"))
    (alone,) = OpticalFlowSubsampler(OpticalFlowArgs(**FLOW))(sample(videos["on_ticks"]), tmp_path)  # type: ignore[arg-type]
    np.testing.assert_array_equal(
        np.load(shared.streams["optical_flow"]), np.load(alone.streams["optical_flow"])
    )
    assert shared.metadata["cuts"]["cuts_original_fps"] == [[0, 50], [50, 100], [100, 150]]
    assert "clips" not in shared.metadata


def test_keyframes_only_take_the_flow_of_the_transcoded_clips(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    chain = chain_for(
        {"FrameSubsampler": {"args": {"downsample_method": "keyframe"}}, "ClippingSubsampler": {"args": {}}}
    )
    clips = apply_subsamplers(chain, sample(videos["on_ticks"]), tmp_path)
    assert [np.load(clip.streams["optical_flow"]).shape for clip in clips] == [(1, 30, 40, 2)] * 3


def test_a_broken_or_slow_source_is_a_failed_sample_with_the_reason(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    def shared(timeout: float) -> CutsAndFlowSubsampler:
        return CutsAndFlowSubsampler(
            CutDetectionSubsampler(CutDetectionArgs(timeout=timeout), cuts_are_clips=True),
            TranscodeSubsampler(clipping=ClippingArgs()),
            OpticalFlowSubsampler(OpticalFlowArgs(timeout=timeout)),
        )

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    with pytest.raises(SubsampleError, match="cannot read video"):
        shared(60)(sample(broken), tmp_path)
    with pytest.raises(SubsampleTimeoutError, match="cut detection and optical flow took longer than"):
        shared(0.0005)(sample(videos["on_ticks"]), tmp_path)
    assert list(tmp_path.iterdir()) == [broken]
