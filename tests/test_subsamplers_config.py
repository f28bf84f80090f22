"""The ``subsampling`` section, the chain it builds, presets, and clip planning (no media needed)."""

from __future__ import annotations

import json

import pytest

from v2d_core.config import Config
from v2d_core.errors import ConfigError, SubsampleError
from v2d_core.job import JobConfig
from v2d_core.sample import Sample
from v2d_core.subsamplers.chain import build_subsamplers, output_encode_formats
from v2d_core.subsamplers.clips import Span, clip_sample, plan, raw_spans, to_seconds, to_timestamp
from v2d_core.subsamplers.cut_detection import CutDetectionSubsampler, scenes
from v2d_core.subsamplers.optical_flow import OpticalFlowSubsampler
from v2d_core.subsamplers.probe import FFProbeSubsampler
from v2d_core.subsamplers.settings import ClippingArgs, SubsamplingConfig
from v2d_core.subsamplers.subtitles import SubtitleClipsSubsampler, caption_for
from v2d_core.subsamplers.transcode import MAX_CLIPS_PER_PROCESS, TranscodeSubsampler, batches


def job(subsampling: dict, **options: object) -> JobConfig:
    storage = options.pop("storage", {})
    config = Config.from_mapping({"subsampling": subsampling, "storage": storage})
    return JobConfig(url_list="unused.txt", config=config, **options)  # type: ignore[arg-type]


def kinds(chain: list) -> list[str]:
    return [type(step).__name__ for step in chain]


# --- the subsampling section -------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ({"SuperResolutionSubsampler": {"args": {}}}, "SuperResolutionSubsampler"),
        ({"FrameSubsampler": {"args": {"frame_rate": 5, "fps": 5}}}, "fps"),
        ({"FrameSubsampler": {"arg": {"frame_rate": 5}}}, "arg"),
        ({"ResolutionSubsampler": {"args": {"video_size": 224, "resize_mode": "zoom"}}}, "zoom"),
        ({"ResolutionSubsampler": {"args": {"video_size": 224}}}, "resize_mode"),
        (
            {"ResolutionSubsampler": {"args": {"video_size": 224, "height": 10, "resize_mode": "scale"}}},
            "video_size",
        ),
        ({"ResolutionSubsampler": {"args": {"height": 10, "resize_mode": "crop"}}}, "crop"),
        ({"FrameSubsampler": {"args": {"frame_rate": 0}}}, "frame_rate"),
        ({"FrameSubsampler": {"args": {"frame_rate": 5, "downsample_method": "middle"}}}, "middle"),
        ({"AudioRateSubsampler": {"args": {"sample_rate": "44k"}}}, "sample_rate"),
        ({"ClippingSubsampler": {"args": {"precision": "fuzzy"}}}, "fuzzy"),
        ({"ClippingSubsampler": {"args": {"max_length_strategy": "last"}}}, "last"),
        ({"CutDetectionSubsampler": {"cuts_are_clips": "yes", "args": {}}}, "cuts_are_clips"),
        ({"CutDetectionSubsampler": {"args": {"cut_detection_mode": "some"}}}, "some"),
        ({"CutDetectionSubsampler": {"args": {"framerates": "5"}}}, "framerates"),
        ({"FFProbeSubsampler": {"args": {"extract_keyframes": "no"}}}, "extract_keyframes"),
        ({"OpticalFlowSubsampler": {"args": {"detector": "raft"}}}, "raft"),
        ({"OpticalFlowSubsampler": {"args": {"dtype": "fp8"}}}, "fp8"),
        ({"OpticalFlowSubsampler": {"args": {"detector_args": [0.5, 3]}}}, "detector_args"),
        ({"FFProbeSubsampler": {"args": {"timeout": 0}}}, "timeout"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_culprit(section: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        build_subsamplers(job(section))


def test_video2dataset_defaults_and_shapes_are_accepted() -> None:
    config = SubsamplingConfig.from_mapping(
        {
            "ResolutionSubsampler": {"args": {"height": 90, "resize_mode": ["scale"]}},
            "FrameSubsampler": {"args": {"frame_rate": 5}},
            "AudioRateSubsampler": {"args": {"sample_rate": 16000, "encode_format": "m4a"}},
            "ClippingSubsampler": {"args": {}},
            "CutDetectionSubsampler": {"cuts_are_clips": True, "args": {"framerates": [5]}},
            "FFProbeSubsampler": None,
            "OpticalFlowSubsampler": {"args": {"detector_args": [0.5, 3, 15, 3, 5, 1.2, 0]}},
        }
    )
    assert config.resolution is not None and config.resolution.resize_mode == ("scale",)
    assert config.frame is not None and config.frame.downsample_method == "fps"
    assert config.clipping == ClippingArgs(
        min_length=0.0, max_length=999999.0, max_length_strategy="all", precision="low"
    )
    assert config.cut_detection is not None
    assert (config.cut_detection.threshold, config.cut_detection.min_scene_len) == (27.0, 15)
    assert config.cut_detection.framerates == (5,)
    assert config.cuts_are_clips is True
    assert config.ffprobe is not None and config.ffprobe.extract_keyframes is False
    assert config.optical_flow is not None and config.optical_flow.dtype == "fp16"


# --- the chain ---------------------------------------------------------------------------


def test_empty_section_builds_an_empty_chain() -> None:
    assert build_subsamplers(job({})) == []


def test_ffmpeg_transforms_fuse_into_one_transcode_step() -> None:
    chain = build_subsamplers(
        job(
            {
                "ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale,crop,pad"}},
                "FrameSubsampler": {"args": {"frame_rate": 5}},
                "AudioRateSubsampler": {"args": {"sample_rate": 16000}},
            },
            encode_formats={"video": "mp4", "audio": "m4a"},
        )
    )
    assert kinds(chain) == ["TranscodeSubsampler"]
    transcode = chain[0]
    assert isinstance(transcode, TranscodeSubsampler)
    assert transcode.clipping is None  # no clip column, no cuts_are_clips, no subtitles
    assert (transcode.video_ext, transcode.audio_ext) == ("mp4", "m4a")


@pytest.mark.parametrize(
    ("options", "clipping_on"),
    [
        ({}, False),
        ({"clip_col": "clips"}, True),
        ({"storage": {"captions_are_subtitles": True}}, True),
    ],
)
def test_clipping_is_on_as_in_video2dataset(options: dict, clipping_on: bool) -> None:
    chain = build_subsamplers(job({"ClippingSubsampler": {"args": {"min_length": 1.0}}}, **options))
    transcodes = [step for step in chain if isinstance(step, TranscodeSubsampler)]
    assert bool(transcodes) == clipping_on
    if clipping_on:
        assert transcodes[0].clipping == ClippingArgs(min_length=1.0)


def test_keyframe_adjusted_clipping_probes_keyframes_first() -> None:
    chain = build_subsamplers(
        job({"ClippingSubsampler": {"args": {"precision": "keyframe_adjusted"}}}, clip_col="clips")
    )
    assert kinds(chain) == ["FFProbeSubsampler", "TranscodeSubsampler"]
    assert isinstance(chain[0], FFProbeSubsampler) and chain[0].args.extract_keyframes


def test_subtitles_take_precedence_over_cut_detection() -> None:
    section = {"CutDetectionSubsampler": {"cuts_are_clips": True, "args": {}}}
    assert kinds(build_subsamplers(job(section))) == ["CutDetectionSubsampler", "TranscodeSubsampler"]
    with_subtitles = build_subsamplers(job(section, storage={"captions_are_subtitles": True}))
    assert kinds(with_subtitles) == ["SubtitleClipsSubsampler", "TranscodeSubsampler"]


def test_presets_load_and_build_their_chains() -> None:
    expected = {
        "default": [],
        "downsample_ml": ["FFProbeSubsampler", "CutDetectionSubsampler", "TranscodeSubsampler"],
        "optical_flow": ["OpticalFlowSubsampler"],
        "cut_detection": ["FFProbeSubsampler", "CutDetectionSubsampler"],
    }
    for name, chain_kinds in expected.items():
        chain = build_subsamplers(JobConfig(url_list="unused.txt", config=Config.load(name)))
        assert kinds(chain) == chain_kinds, name
    probe, cuts, transcode = build_subsamplers(JobConfig(url_list="x", config=Config.load("downsample_ml")))
    assert isinstance(probe, FFProbeSubsampler) and probe.args.extract_keyframes
    assert isinstance(cuts, CutDetectionSubsampler) and cuts.cuts_are_clips and cuts.args.threshold == 11.5
    assert isinstance(transcode, TranscodeSubsampler)
    assert transcode.resolution.video_size == 224 and transcode.resolution.resize_mode == (
        "scale",
        "crop",
        "pad",
    )
    assert transcode.frame.frame_rate == 5
    assert transcode.clipping == ClippingArgs(min_length=4.0, max_length=10.0, precision="keyframe_adjusted")
    (flow,) = build_subsamplers(JobConfig(url_list="x", config=Config.load("optical_flow")))
    assert isinstance(flow, OpticalFlowSubsampler)
    assert (flow.args.fps, flow.args.downsample_size, flow.args.dtype) == (2, 16, "fp16")


def test_output_encode_formats_follow_the_chain() -> None:
    assert output_encode_formats(job({})) == {"video": "mp4"}
    first_frame = job({"FrameSubsampler": {"args": {"downsample_method": "first_frame"}}})
    assert output_encode_formats(first_frame) == {"video": "jpg"}
    flow_and_audio = job(
        {
            "OpticalFlowSubsampler": {"args": {}},
            "AudioRateSubsampler": {"args": {"sample_rate": 16000, "encode_format": "mp3"}},
        },
        encode_formats={"video": "mp4", "audio": "m4a"},
    )
    assert output_encode_formats(flow_and_audio) == {"video": "mp4", "audio": "mp3", "optical_flow": "npy"}


def test_subtitle_step_needs_subtitles() -> None:
    with pytest.raises(SubsampleError, match="subtitles"):
        SubtitleClipsSubsampler()(Sample(key="k", url="u"), workdir=None)  # type: ignore[arg-type]


# --- clip planning -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3, 3.0),
        (2.5, 2.5),
        ("00:01:02.500", 62.5),
        ("01:00:00.000", 3600.0),
        ("00:00:01,250", 1.25),
        ("4.5", 4.5),
    ],
)
def test_clip_times_are_seconds_or_timestamps(value: object, seconds: float) -> None:
    assert to_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "1:2:3:4", True, None, "-00:00:01"])
def test_bad_clip_times_fail_the_sample(value: object) -> None:
    with pytest.raises(SubsampleError):
        to_seconds(value)


def test_timestamps_round_trip() -> None:
    assert to_timestamp(62.5) == "00:01:02.500"
    assert to_timestamp(3723.004) == "01:02:03.004"
    assert to_seconds(to_timestamp(13.6)) == pytest.approx(13.6)


def test_spans_come_from_metadata_or_the_clip_column() -> None:
    from_column = Sample(key="k", url="u", extra={"clips": json.dumps([[1, 2], [3, 4]])})
    assert raw_spans(from_column) == [[1, 2], [3, 4]]
    single = Sample(key="k", url="u", extra={"clips": json.dumps(["00:00:01.000", "00:00:02.000"])})
    assert raw_spans(single) == [["00:00:01.000", "00:00:02.000"]]
    detected = Sample(key="k", url="u", extra={"clips": "[[0, 1]]"}, metadata={"clips": [[5.0, 6.0]]})
    assert raw_spans(detected) == [[5.0, 6.0]]
    for bad in ({}, {"clips": "not json"}, {"clips": "[1, 2, 3]"}, {"clips": "[]"}):
        with pytest.raises(SubsampleError):
            raw_spans(Sample(key="k", url="u", extra=bad))


def test_plan_splits_by_max_length_and_drops_short_remainders() -> None:
    args = ClippingArgs(min_length=2.0, max_length=4.0)
    assert plan([[0, 10]], args) == [Span(0, 4), Span(4, 8), Span(8, 10)]
    assert plan([[0, 9.5]], args) == [Span(0, 4), Span(4, 8)]  # 1.5 s rest < min_length
    assert plan([[0, 1], [2, 5]], args) == [Span(2, 5)]
    first = ClippingArgs(max_length=4.0, max_length_strategy="first")
    assert plan([[0, 10], [20, 22]], first) == [Span(0, 4), Span(20, 22)]


def test_plan_clamps_to_the_duration_and_snaps_to_keyframes() -> None:
    args = ClippingArgs()
    assert plan([[1, 5], [5.5, 9], [7, 9]], args, duration=6.0) == [Span(1, 5), Span(5.5, 6)]
    keyframes = [0.0, 2.0, 4.0, 6.0, 8.0]
    assert plan([[1, 7], [2.5, 3.5], ["00:00:03.000", "00:00:08.000"]], args, keyframes=keyframes) == [
        Span(2, 6),
        Span(4, 8),
    ]


def test_clip_samples_record_their_span_and_origin() -> None:
    sample = Sample(
        key="00042003",
        url="http://x/v.mp4",
        caption="a cat",
        extra={"clips": "[[...]]", "views": 3},
        metadata={"yt_meta_dict": {"title": "t"}, "video_metadata": {"format": {}}},
    )
    first = clip_sample(sample, 0, Span(1.5, 3.0), as_text=False)
    second = clip_sample(sample, 1, Span(3.0, 4.25), as_text=True)
    assert (first.key, second.key) == ("00042003_00000", "00042003_00001")
    assert first.metadata["clips"] == [[1.5, 3.0]] and json.loads(first.extra["clips"]) == [[1.5, 3.0]]
    assert second.metadata["clips"] == [["00:00:03.000", "00:00:04.250"]]
    assert first.metadata["original_key"] == second.metadata["original_key"] == "00042003"
    assert first.metadata["yt_meta_dict"] == {"title": "t"} and second.metadata["yt_meta_dict"] == {}
    assert second.extra["views"] == 3 and second.caption == "a cat" and second.streams == {}
    assert sample.metadata["yt_meta_dict"] == {"title": "t"}  # the original is untouched
    record = second.record()
    assert record["key"] == "00042003_00001" and record["clips"] == [["00:00:03.000", "00:00:04.250"]]


def test_nearby_clips_share_a_process_and_far_ones_do_not() -> None:
    contiguous = [Span(i, i + 1) for i in range(MAX_CLIPS_PER_PROCESS + 2)]
    assert batches(contiguous) == [
        list(range(MAX_CLIPS_PER_PROCESS)),
        [MAX_CLIPS_PER_PROCESS, MAX_CLIPS_PER_PROCESS + 1],
    ]
    assert batches([Span(0, 1), Span(2.5, 3), Span(30, 31), Span(31.5, 40), Span(10, 12)]) == [
        [0, 1],
        [2, 3],
        [4],
    ]
    assert batches([Span(0, 10), Span(2, 3)]) == [[0, 1]]  # overlapping clips are fine: each has its own trim


def test_scenes_from_cuts() -> None:
    assert scenes([50, 100], 150, "all") == [[0, 50], [50, 100], [100, 150]]
    assert scenes([], 150, "all") == [[0, 150]]
    assert scenes([30, 100], 150, "longest") == [[30, 100]]


def test_subtitle_captions_are_the_overlapping_lines() -> None:
    metadata = {
        "yt_meta_dict": {
            "subtitles": {
                "en": [
                    {"start": "00:00:00.000", "end": "00:00:01.500", "lines": ["hello"]},
                    {"start": "00:00:01.500", "end": "00:00:03.000", "lines": ["big", "world"]},
                ]
            }
        }
    }
    assert caption_for(metadata, Span(0.0, 1.5)) == "hello"
    assert caption_for(metadata, Span(1.0, 2.0)) == "hello big world"
    assert caption_for(metadata, Span(5.0, 6.0)) is None
