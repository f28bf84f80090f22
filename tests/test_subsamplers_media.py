"""Subsamplers on real, tiny videos whose answers are known (lavfi scenes at known frames)."""

from __future__ import annotations

import json
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import av
import ffmpeg
import numpy as np
import pytest

from v2d_core.config import Config
from v2d_core.errors import FFmpegError, SubsampleError, SubsampleTimeoutError
from v2d_core.fetch.audio import extract_audio
from v2d_core.job import JobConfig
from v2d_core.sample import Sample
from v2d_core.subsamplers import runner
from v2d_core.subsamplers.chain import apply_subsamplers, build_subsamplers
from v2d_core.subsamplers.cut_detection import CutDetectionSubsampler, analysis_frames, detect_cuts, scenes
from v2d_core.subsamplers.frames import read_frames
from v2d_core.subsamplers.optical_flow import OpticalFlowSubsampler
from v2d_core.subsamplers.probe import FFProbeSubsampler
from v2d_core.subsamplers.settings import (
    AudioRateArgs,
    ClippingArgs,
    CutDetectionArgs,
    FFProbeArgs,
    FrameArgs,
    OpticalFlowArgs,
    ResolutionArgs,
)
from v2d_core.subsamplers.transcode import TranscodeSubsampler
from v2d_core.testing.scenes import make_scene_video

FPS = 25
THREE_SCENES = [("testsrc2", 2.0), ("color=c=red", 2.0), ("smptebars", 2.0)]  # cuts at frames 50 and 100


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scenes")
    scenes = make_scene_video(folder / "scenes.mp4", THREE_SCENES, fps=FPS, gop=FPS)
    broken = folder / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    return {
        "scenes": scenes,
        "audio": extract_audio(scenes, "m4a", folder, timeout=30),
        "still": make_scene_video(folder / "still.mp4", [("smptebars", 1.0)], audio=False),
        "moving": make_scene_video(
            folder / "moving.mp4", [("testsrc,scroll=horizontal=0.01", 1.0)], audio=False
        ),
        "long_scenes": make_scene_video(
            folder / "long.mp4",
            [("testsrc2", 5.0), ("smptebars", 5.0)],
            width=192,
            height=108,
            fps=FPS,
            gop=FPS,
        ),
        "broken": broken,
    }


def video_sample(path: Path, key: str = "00000000", **fields: object) -> Sample:
    return Sample(key=key, url=f"http://127.0.0.1/{path.name}", streams={"video": path}, **fields)  # type: ignore[arg-type]


def read_video(path: Path) -> dict[str, object]:
    """What a viewer sees: frame count, size, average rate, audio (rate, channels) per audio stream."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {
            "frames": frames,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "fps": stream.average_rate,
            "audio": [
                (a.codec_context.sample_rate, a.codec_context.layout.nb_channels)
                for a in container.streams.audio
            ],
        }


def read_audio(path: Path) -> tuple[int, int, float]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return (
            stream.codec_context.sample_rate,
            stream.codec_context.layout.nb_channels,
            container.duration / 1e6,
        )


# --- analysis: probe and cuts ------------------------------------------------------------


def test_ffprobe_metadata_and_keyframes(media: dict[str, Path], tmp_path: Path) -> None:
    (sample,) = FFProbeSubsampler(FFProbeArgs(extract_keyframes=True))(
        video_sample(media["scenes"]), tmp_path
    )
    metadata = sample.metadata["video_metadata"]
    video, audio = metadata["streams"]
    assert (video["codec_type"], video["width"], video["height"], video["avg_frame_rate"]) == (
        "video",
        160,
        120,
        "25/1",
    )
    assert (audio["codec_type"], audio["sample_rate"]) == ("audio", "44100")
    assert float(metadata["format"]["duration"]) == pytest.approx(6.0, abs=0.05)
    # one keyframe per second (GOP 25 at 25 fps), then the duration, as video2dataset lists them
    assert metadata["keyframe_timestamps"] == pytest.approx([0, 1, 2, 3, 4, 5, 6], abs=0.03)
    json.dumps(metadata)  # goes into the sample's json as is


def test_cut_detection_finds_the_exact_cut_frames(media: dict[str, Path], tmp_path: Path) -> None:
    args = CutDetectionArgs(framerates=(5,))
    (sample,) = CutDetectionSubsampler(args, cuts_are_clips=True)(video_sample(media["scenes"]), tmp_path)
    cuts = sample.metadata["cuts"]
    assert cuts["original_fps"] == 25.0
    assert cuts["cuts_original_fps"] == [[0, 50], [50, 100], [100, 150]]
    assert cuts["cuts_5"] == [[0, 50], [50, 100], [100, 150]]
    assert sample.metadata["clips"] == [[0.0, 2.0], [2.0, 4.0], [4.0, 6.0]]


def test_cut_detection_answers_as_scenedetect_fed_frame_by_frame(tmp_path: Path) -> None:
    """Frames are scored in batches of 256; the answers are ContentDetector's own, at every rate,
    across a batch boundary (a cut at frame 256) and with moving scenes near the threshold."""
    from scenedetect import ContentDetector
    from scenedetect.common import FrameTimecode

    video = make_scene_video(
        tmp_path / "many.mp4",
        [("testsrc2", 4.0), ("testsrc,scroll=horizontal=0.02", 6.24), ("smptebars,hue=H=t", 2.0)],
        fps=FPS,
    )
    found = detect_cuts(video, CutDetectionArgs(framerates=(5,), threshold=12))
    frames = list(analysis_frames(video, timeout=30))
    assert len(frames) == 306 and frames[0].shape == (60, 80, 3)
    for name, stride in (("cuts_original_fps", 1), ("cuts_5", 5)):
        detector, cuts = ContentDetector(threshold=12, min_scene_len=15), []
        for index, frame in enumerate(frames[::stride]):
            cuts += [
                cut.frame_num for cut in detector.process_frame(FrameTimecode(index * stride, 25.0), frame)
            ]
        assert found[name] == scenes(cuts, len(frames), "all")
    assert [start for start, _ in found["cuts_original_fps"]][:3] == [0, 100, 256]


def test_cut_detection_longest_mode_keeps_one_scene(media: dict[str, Path], tmp_path: Path) -> None:
    longest = CutDetectionSubsampler(CutDetectionArgs(cut_detection_mode="longest"), cuts_are_clips=False)
    (sample,) = longest(video_sample(media["long_scenes"]), tmp_path)
    assert sample.metadata["cuts"]["cuts_original_fps"] == [[0, 125]]
    assert "clips" not in sample.metadata


# --- the fused transcode -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("resize_mode", "size", "expected"),
    [
        ("scale", {"height": 60}, (80, 60)),
        ("scale", {"width": 40}, (40, 30)),
        ("crop", {"video_size": 64}, (64, 64)),
        ("pad", {"video_size": 200}, (200, 200)),
        ("scale,crop,pad", {"video_size": 96}, (96, 96)),
        ("scale,crop,pad", {"height": 100, "width": 64}, (64, 100)),
    ],
)
def test_resolution_modes(
    media: dict[str, Path], tmp_path: Path, resize_mode: str, size: dict, expected: tuple[int, int]
) -> None:
    transcode = TranscodeSubsampler(resolution=ResolutionArgs(resize_mode=resize_mode, **size))
    (sample,) = transcode(video_sample(media["scenes"]), tmp_path)
    seen = read_video(sample.streams["video"])
    assert seen["size"] == expected
    assert seen["frames"] == 150 and seen["audio"] == [(44100, 1)]


def audio_packets(path: Path) -> tuple[str, list[bytes]]:
    """The first audio stream's codec and its packets' bytes."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return stream.codec_context.name, [bytes(p) for p in container.demux(stream) if p.size]


def test_resized_video_keeps_its_audio_as_a_stream_copy(media: dict[str, Path], tmp_path: Path) -> None:
    transcode = TranscodeSubsampler(
        resolution=ResolutionArgs(resize_mode="scale", height=60), frame=FrameArgs(frame_rate=5)
    )
    (sample,) = transcode(video_sample(media["scenes"]), tmp_path)
    assert read_video(sample.streams["video"])["size"] == (80, 60)
    assert audio_packets(sample.streams["video"]) == audio_packets(media["scenes"])


def test_audio_the_container_cannot_hold_is_reencoded(media: dict[str, Path], tmp_path: Path) -> None:
    source = tmp_path / "pcm.mkv"
    ffmpeg.input(str(media["scenes"])).output(str(source), vcodec="copy", acodec="pcm_s16le").run(
        cmd=runner.ffmpeg_exe(), quiet=True
    )
    transcode = TranscodeSubsampler(resolution=ResolutionArgs(resize_mode="scale", height=60))
    (sample,) = transcode(video_sample(source), tmp_path)
    seen = read_video(sample.streams["video"])
    assert seen["size"] == (80, 60) and seen["audio"] == [(44100, 1)]
    assert audio_packets(sample.streams["video"])[0] == "aac"


def test_one_ffmpeg_process_resizes_resamples_and_writes_audio(
    media: dict[str, Path], tmp_path: Path
) -> None:
    transcode = TranscodeSubsampler(
        resolution=ResolutionArgs(resize_mode="scale,crop,pad", video_size=64),
        frame=FrameArgs(frame_rate=5),
        audio_rate=AudioRateArgs(sample_rate=16000, n_audio_channels=2),
        encode_formats={"video": "mp4", "audio": "m4a"},
    )
    sample = video_sample(media["scenes"])
    sample.streams["audio"] = media["audio"]
    (out,) = transcode(sample, tmp_path)
    seen = read_video(out.streams["video"])
    assert seen["size"] == (64, 64) and seen["fps"] == 5 and seen["frames"] == 30
    rate, channels, seconds = read_audio(out.streams["audio"])
    assert (rate, channels) == (16000, 2) and seconds == pytest.approx(6.0, abs=0.1)
    assert out.streams["video"].suffix == ".mp4" and out.streams["audio"].suffix == ".m4a"
    assert media["scenes"].exists() and media["audio"].exists()  # inputs are never touched


def test_keyframe_and_first_frame_methods(media: dict[str, Path], tmp_path: Path) -> None:
    keyframes = TranscodeSubsampler(frame=FrameArgs(downsample_method="keyframe"))
    (sample,) = keyframes(video_sample(media["scenes"], "k"), tmp_path)
    assert read_video(sample.streams["video"])["frames"] == 6  # one keyframe per second
    first = TranscodeSubsampler(
        resolution=ResolutionArgs(resize_mode="scale", height=60),
        frame=FrameArgs(downsample_method="first_frame"),
    )
    (sample,) = first(video_sample(media["scenes"], "f"), tmp_path)
    assert sample.streams["video"].suffix == ".jpg"
    seen = read_video(sample.streams["video"])
    assert seen["frames"] == 1 and seen["size"] == (80, 60)


def test_untouched_modalities_are_not_reencoded(media: dict[str, Path], tmp_path: Path) -> None:
    sample = video_sample(media["scenes"])
    sample.streams["audio"] = media["audio"]
    (out,) = TranscodeSubsampler(audio_rate=AudioRateArgs(sample_rate=8000, n_audio_channels=1))(
        sample, tmp_path
    )
    assert out.streams["video"] == media["scenes"]
    assert read_audio(out.streams["audio"])[:2] == (8000, 1)


# --- clipping ----------------------------------------------------------------------------

SPANS = [[0.5, 1.7], ["00:00:02.000", "00:00:04.300"], [5.0, 5.2]]


def clipped(media: dict[str, Path], tmp_path: Path, precision: str, frame: FrameArgs | None) -> list[Sample]:
    transcode = TranscodeSubsampler(
        resolution=ResolutionArgs(resize_mode="scale", height=60),
        frame=frame,
        audio_rate=AudioRateArgs(sample_rate=16000),
        clipping=ClippingArgs(precision=precision, min_length=0.5),
    )
    sample = video_sample(media["scenes"], extra={"clips": json.dumps(SPANS)})
    sample.streams["audio"] = media["audio"]
    chain = [FFProbeSubsampler(FFProbeArgs(extract_keyframes=True)), transcode]
    return apply_subsamplers(chain, sample, tmp_path)


@pytest.mark.parametrize(("frame_rate", "expected"), [(None, [30, 58]), (10, [12, 23])])
def test_exact_clips_have_length_times_fps_frames(
    media: dict[str, Path], tmp_path: Path, frame_rate: int | None, expected: list[int]
) -> None:
    frame = FrameArgs(frame_rate=frame_rate) if frame_rate else None
    clips = clipped(media, tmp_path, "exact", frame)
    assert [clip.key for clip in clips] == ["00000000_00000", "00000000_00001"]  # the 0.2 s span is too short
    assert [read_video(clip.streams["video"])["frames"] for clip in clips] == expected
    assert all(read_video(clip.streams["video"])["fps"] == (frame_rate or FPS) for clip in clips)
    assert [read_audio(clip.streams["audio"])[0] for clip in clips] == [16000, 16000]
    assert [read_audio(clip.streams["audio"])[2] for clip in clips] == pytest.approx([1.2, 2.3], abs=0.05)
    assert clips[0].metadata["clips"] == [[0.5, 1.7]] and clips[1].metadata["clips"] == [[2.0, 4.3]]
    assert clips[1].metadata["original_key"] == "00000000"


def test_keyframe_adjusted_clips_start_and_end_on_keyframes(media: dict[str, Path], tmp_path: Path) -> None:
    clips = clipped(media, tmp_path, "keyframe_adjusted", FrameArgs(frame_rate=10))
    # [0.5, 1.7] holds one keyframe only (dropped); [2, 4.3] -> [2, 4]; [5, 5.2] holds none
    assert [clip.metadata["clips"] for clip in clips] == [[[2.0, 4.0]]]
    assert read_video(clips[0].streams["video"])["frames"] == 20
    assert "keyframe_timestamps" not in clips[0].metadata["video_metadata"]


def test_low_precision_clips_without_transforms_are_stream_copies(
    media: dict[str, Path], tmp_path: Path
) -> None:
    transcode = TranscodeSubsampler(clipping=ClippingArgs(max_length=1.0))
    sample = video_sample(media["scenes"], extra={"clips": json.dumps([["00:00:01.000", "00:00:03.500"]])})
    clips = transcode(sample, tmp_path)
    assert [clip.metadata["clips"] for clip in clips] == [
        [["00:00:01.000", "00:00:02.000"]],
        [["00:00:02.000", "00:00:03.000"]],
        [["00:00:03.000", "00:00:03.500"]],  # the rest is kept: it is longer than min_length 0
    ]
    seen = read_video(clips[0].streams["video"])
    assert seen["size"] == (160, 120) and seen["frames"] == 25  # starts on a keyframe: exact even as a copy
    assert read_video(clips[2].streams["video"])["frames"] == 13  # low precision: cut at packet bounds


def test_cuts_become_clips_end_to_end(media: dict[str, Path], tmp_path: Path) -> None:
    config = Config.from_mapping(
        {
            "subsampling": {
                "ResolutionSubsampler": {"args": {"video_size": 32, "resize_mode": "scale,crop,pad"}},
                "FrameSubsampler": {"args": {"frame_rate": 5}},
                "CutDetectionSubsampler": {"cuts_are_clips": True, "args": {}},
                "ClippingSubsampler": {"args": {"precision": "exact"}},
            }
        }
    )
    chain = build_subsamplers(JobConfig(url_list="x", config=config))
    clips = apply_subsamplers(chain, video_sample(media["scenes"]), tmp_path)
    assert [clip.metadata["clips"] for clip in clips] == [[[0.0, 2.0]], [[2.0, 4.0]], [[4.0, 6.0]]]
    assert [read_video(clip.streams["video"])["frames"] for clip in clips] == [10, 10, 10]
    assert all(read_video(clip.streams["video"])["size"] == (32, 32) for clip in clips)
    assert all(
        clip.metadata["cuts"]["cuts_original_fps"] == [[0, 50], [50, 100], [100, 150]] for clip in clips
    )
    # the three clips came from one process (split + trim); each holds its own scene
    red = [is_red(first_frame(clip.streams["video"])) for clip in clips]
    assert red == [False, True, False]


def first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def is_red(frame: np.ndarray) -> bool:
    red, green, blue = frame.reshape(-1, 3).mean(axis=0)
    return bool(red > 180 and green < 60 and blue < 60)


def test_modalities_outside_encode_formats_are_not_transcoded(media: dict[str, Path], tmp_path: Path) -> None:
    transcode = TranscodeSubsampler(
        resolution=ResolutionArgs(resize_mode="scale", height=60), clipping=ClippingArgs(), encode_formats={}
    )
    clips = transcode(video_sample(media["scenes"], extra={"clips": "[[0, 1], [4, 5]]"}), tmp_path)
    assert [(clip.key, clip.streams) for clip in clips] == [("00000000_00000", {}), ("00000000_00001", {})]
    assert list(tmp_path.iterdir()) == []


def test_downsample_ml_preset_on_two_five_second_scenes(media: dict[str, Path], tmp_path: Path) -> None:
    chain = build_subsamplers(JobConfig(url_list="x", config=Config.load("downsample_ml")))
    clips = apply_subsamplers(chain, video_sample(media["long_scenes"]), tmp_path)
    assert [clip.metadata["clips"] for clip in clips] == [[[0.0, 5.0]], [[5.0, 10.0]]]
    for clip in clips:
        seen = read_video(clip.streams["video"])
        assert seen["size"] == (224, 224) and seen["fps"] == 5 and seen["frames"] == 25
        assert clip.metadata["video_metadata"]["streams"][0]["width"] == 192


def test_subtitles_become_clips_and_captions(media: dict[str, Path], tmp_path: Path) -> None:
    subtitles = [
        {"start": "00:00:00.500", "end": "00:00:01.500", "lines": ["hello"]},
        {"start": "00:00:02.000", "end": "00:00:03.000", "lines": ["big", "world"]},
    ]
    config = Config.from_mapping({"storage": {"captions_are_subtitles": True}})
    chain = build_subsamplers(JobConfig(url_list="x", config=config))
    sample = video_sample(media["scenes"], metadata={"yt_meta_dict": {"subtitles": {"en": subtitles}}})
    clips = apply_subsamplers(chain, sample, tmp_path)
    assert [clip.caption for clip in clips] == ["hello", "big world"]
    assert [clip.metadata["clips"] for clip in clips] == [
        [["00:00:00.500", "00:00:01.500"]],
        [["00:00:02.000", "00:00:03.000"]],
    ]


# --- optical flow ------------------------------------------------------------------------


def test_optical_flow_is_near_zero_when_still_and_large_when_moving(
    media: dict[str, Path], tmp_path: Path
) -> None:
    flow = OpticalFlowSubsampler(OpticalFlowArgs(fps=10, downsample_size=60, dtype="fp32"))
    (still,) = flow(video_sample(media["still"], "still"), tmp_path)
    (moving,) = flow(video_sample(media["moving"], "moving"), tmp_path)
    still_flow, moving_flow = (
        still.metadata["mean_optical_flow_magnitude"],
        moving.metadata["mean_optical_flow_magnitude"],
    )
    assert still_flow < 0.15 and moving_flow > 1.5 and moving_flow > 20 * still_flow  # px per frame pair
    array = np.load(moving.streams["optical_flow"])
    assert array.shape == (9, 60, 80, 2) and array.dtype == np.float32  # 10 frames at 10 fps, short side 60
    assert len(moving.metadata["mean_optical_flow_magnitude_per_frame"]) == 9
    assert moving.metadata["optical_flow_fps"] == 10.0 and moving.metadata["optical_flow_dtype"] == "fp32"
    assert moving.streams["optical_flow"].suffix == ".npy" and moving.streams["video"] == media["moving"]


@pytest.mark.parametrize(("short_side", "expected"), [(60, 4.0), (30, 2.0)])
def test_optical_flow_is_in_pixels_of_the_analysis_frames(
    media: dict[str, Path], tmp_path: Path, short_side: int, expected: float
) -> None:
    # The whole 160x120 picture scrolls sideways 1.6 px a frame; at 5 fps that is 8 source px per
    # pair, which video2dataset 1.3.0's cv2 detector reports in pixels of the resized frames.
    flow = OpticalFlowSubsampler(OpticalFlowArgs(fps=5, downsample_size=short_side, dtype="fp32"))
    (sample,) = flow(video_sample(media["moving"]), tmp_path)
    array = np.load(sample.streams["optical_flow"])
    assert array.shape == (4, short_side, short_side * 4 // 3, 2)
    assert abs(np.median(array[..., 0])) == pytest.approx(expected, rel=0.1)
    assert abs(np.median(array[..., 1])) < 0.1


def flow_as_video2dataset_1_3_0(path: Path, stride: int, size: tuple[int, int]) -> float:
    """1.3.0's cv2 pipeline: every ``stride``-th frame as RGB, resized with Lanczos, made grey
    with OpenCV's BGR weights, Farneback at OpenCV's usual values; the mean flow magnitude."""
    import cv2

    capture, frames, index = cv2.VideoCapture(str(path)), [], 0
    while (read := capture.read())[0]:
        if index % stride == 0:
            rgb = cv2.resize(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_LANCZOS4)
            frames.append(cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_BGR2GRAY))
        index += 1
    capture.release()
    flows = [
        cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # type: ignore[call-overload]
        for a, b in pairwise(frames)
    ]
    return float(np.mean([np.linalg.norm(flow, axis=-1).mean() for flow in flows]))


def test_optical_flow_values_match_video2dataset_1_3_0_within_10_percent(tmp_path: Path) -> None:
    video = make_scene_video(
        tmp_path / "two.mp4",
        [("testsrc,scroll=horizontal=0.01", 2.0), ("smptehdbars,scroll=vertical=0.02", 2.0)],
        width=320,
        height=180,
        fps=30,
        audio=False,
    )
    flow = OpticalFlowSubsampler(OpticalFlowArgs(fps=2, downsample_size=16))
    (sample,) = flow(video_sample(video), tmp_path)
    expected = flow_as_video2dataset_1_3_0(video, stride=15, size=(28, 16))
    assert sample.metadata["mean_optical_flow_magnitude"] == pytest.approx(expected, rel=0.1)


def test_optical_flow_default_dtype_is_fp16(media: dict[str, Path], tmp_path: Path) -> None:
    (sample,) = OpticalFlowSubsampler(OpticalFlowArgs(downsample_size=16))(
        video_sample(media["moving"]), tmp_path
    )
    assert np.load(sample.streams["optical_flow"]).dtype == np.float16
    assert sample.metadata["optical_flow_fps"] == 25.0


# --- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "step",
    [
        FFProbeSubsampler(FFProbeArgs()),
        CutDetectionSubsampler(CutDetectionArgs(), cuts_are_clips=True),
        TranscodeSubsampler(resolution=ResolutionArgs(resize_mode="scale", height=60)),
        OpticalFlowSubsampler(OpticalFlowArgs()),
    ],
    ids=lambda step: type(step).__name__,
)
def test_a_broken_input_is_a_subsample_error(media: dict[str, Path], tmp_path: Path, step: object) -> None:
    with pytest.raises(SubsampleError):
        step(video_sample(media["broken"]), tmp_path)  # type: ignore[operator]


def test_a_sample_without_video_is_a_subsample_error(tmp_path: Path) -> None:
    with pytest.raises(SubsampleError, match="video"):
        OpticalFlowSubsampler(OpticalFlowArgs())(Sample(key="k", url="u"), tmp_path)


def test_clipping_with_no_long_enough_clip_fails(media: dict[str, Path], tmp_path: Path) -> None:
    transcode = TranscodeSubsampler(clipping=ClippingArgs(min_length=3.0))
    with pytest.raises(SubsampleError, match=r"no clips longer than 3\.0"):
        transcode(video_sample(media["scenes"], extra={"clips": "[[0, 1], [2, 4]]"}), tmp_path)


def test_ffmpeg_errors_carry_the_stderr_tail(media: dict[str, Path], tmp_path: Path) -> None:
    output = ffmpeg.input(str(media["scenes"])).filter("no_such_filter").output(str(tmp_path / "x.mp4"))
    with pytest.raises(FFmpegError, match="no_such_filter"):
        runner.run([output], timeout=30, what="test")


def test_a_slow_ffmpeg_is_killed_at_its_timeout(media: dict[str, Path], tmp_path: Path) -> None:
    output = ffmpeg.input(str(media["scenes"])).output(str(tmp_path / "x.mp4"))
    with pytest.raises(SubsampleTimeoutError, match="longer than"):
        runner.run([output], timeout=0.001, what="test")
    frames = read_frames(media["scenes"], width=16, height=12, timeout=0.001, what="reading")
    with pytest.raises(SubsampleTimeoutError):
        list(frames)


def test_a_damaged_stretch_of_video_loses_frames_not_the_analysis(tmp_path: Path) -> None:
    source = make_scene_video(tmp_path / "whole.mp4", [("testsrc2", 2.0), ("smptebars", 2.0)], audio=False)
    data = bytearray(source.read_bytes())
    for fraction in (0.3, 0.6):  # garbage over two stretches of coded frames
        start = int(len(data) * fraction)
        data[start : start + 3000] = bytes(index * 37 % 256 for index in range(3000))
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    frames = list(read_frames(damaged, width=16, height=12, timeout=30, what="t"))
    assert 50 <= len(frames) < 100
    (sample,) = CutDetectionSubsampler(CutDetectionArgs(), cuts_are_clips=False)(
        video_sample(damaged), tmp_path
    )
    assert sample.metadata["cuts"]["cuts_original_fps"][0][0] == 0


def test_frames_are_read_at_the_asked_size_and_rate(media: dict[str, Path]) -> None:
    frames = list(read_frames(media["scenes"], width=16, height=12, fps=Fraction(5), timeout=30, what="t"))
    assert len(frames) == 30 and frames[0].shape == (12, 16, 3) and frames[0].dtype == np.uint8
