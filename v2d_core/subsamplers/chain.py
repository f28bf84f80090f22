"""The chain of subsamplers a job's ``subsampling`` section asks for, and running a sample through it.

The parsed section (:class:`~v2d_core.subsamplers.settings.SubsamplingConfig`) becomes a
chain of at most six steps::

    SourceCheckSubsampler    -> a failed row for an unreadable or too large input video (re-processing
                                stages; the download stage checks the same while fetching)
    FFProbeSubsampler        -> metadata["video_metadata"]   (also for keyframe_adjusted clipping)
    SubtitleClipsSubsampler  -> metadata["clips"]            (storage.captions_are_subtitles)
    CutDetectionSubsampler   -> metadata["cuts"] (+ "clips") (otherwise, when configured)
    TranscodeSubsampler      -> new video / audio files, one sample per clip: Resolution, Frame,
                                AudioRate and Clipping fused into ONE ffmpeg process per sample
                                (per batch of nearby clips): one decode, one encode per output;
                                clips that are stream copies of an mp4/mov are cut in the worker
    OpticalFlowSubsampler    -> streams["optical_flow"] (.npy) + flow magnitudes

With both cut detection and optical flow, one decode of the source serves both:
:class:`~v2d_core.subsamplers.cuts_and_flow.CutsAndFlowSubsampler` takes the place of the last
three steps when the source can stand in for the transcoded video in flow (no resize, no
keyframe or first-frame sampling).

Clipping is on, as in video2dataset 1.3.0, when a clip column is given, when
captions are subtitles, or when cuts are clips. :func:`output_encode_formats` gives the
extension each output modality is written with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from v2d_core.job import JobConfig
from v2d_core.sample import Sample
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.cut_detection import CutDetectionSubsampler
from v2d_core.subsamplers.cuts_and_flow import CutsAndFlowSubsampler, stands_in
from v2d_core.subsamplers.optical_flow import OpticalFlowSubsampler
from v2d_core.subsamplers.probe import FFProbeSubsampler
from v2d_core.subsamplers.settings import ClippingArgs, FFProbeArgs, OpticalFlowArgs, SubsamplingConfig
from v2d_core.subsamplers.source_check import SourceCheckSubsampler
from v2d_core.subsamplers.subtitles import SubtitleClipsSubsampler
from v2d_core.subsamplers.transcode import TranscodeSubsampler, video_format

OPTICAL_FLOW_FORMAT = "npy"


def _clipping(job: JobConfig, config: SubsamplingConfig) -> ClippingArgs | None:
    """ClippingSubsampler's args when clipping is on (video2dataset's rule), else None."""
    on = job.clip_col is not None or job.config.storage.captions_are_subtitles or config.cuts_are_clips
    return (config.clipping or ClippingArgs()) if on else None


def _analysis(job: JobConfig, config: SubsamplingConfig, clipping: ClippingArgs | None) -> list[Subsampler]:
    max_pixels = job.config.reading.max_pixels
    steps: list[Subsampler] = [SourceCheckSubsampler(max_pixels)] if job.input_format == "webdataset" else []
    need_keyframes = clipping is not None and clipping.precision == "keyframe_adjusted"
    if config.ffprobe is not None or need_keyframes:
        args = config.ffprobe or FFProbeArgs()
        if need_keyframes and not args.extract_keyframes:
            args = FFProbeArgs(extract_keyframes=True, timeout=args.timeout)
        steps.append(FFProbeSubsampler(args))
    if job.config.storage.captions_are_subtitles:
        steps.append(SubtitleClipsSubsampler())
    elif config.cut_detection is not None or config.cuts_are_clips:
        steps.append(
            CutDetectionSubsampler(
                config.cut_detection, cuts_are_clips=config.cuts_are_clips, max_pixels=max_pixels
            )
        )
    return steps


def build_subsamplers(job: JobConfig) -> list[Subsampler]:
    """The chain the job's ``subsampling`` section asks for (empty for ``subsampling: {}``)."""
    config = job.config.subsampling
    clipping = _clipping(job, config)
    chain = _analysis(job, config, clipping)
    transcode = None
    if any(args is not None for args in (config.resolution, config.frame, config.audio_rate, clipping)):
        transcode = TranscodeSubsampler(
            resolution=config.resolution,
            frame=config.frame,
            audio_rate=config.audio_rate,
            clipping=clipping,
            encode_formats=job.encode_formats,
            captions_are_subtitles=job.config.storage.captions_are_subtitles,
            max_pixels=job.config.reading.max_pixels,
        )
    flow = None
    if config.optical_flow is not None or job.stage == "optical_flow":
        flow = OpticalFlowSubsampler(
            config.optical_flow or OpticalFlowArgs(), max_pixels=job.config.reading.max_pixels
        )
    cuts = chain[-1] if chain and isinstance(chain[-1], CutDetectionSubsampler) else None
    if flow is not None and cuts is not None and cuts.args is not None and stands_in(transcode):
        return [*chain[:-1], CutsAndFlowSubsampler(cuts, transcode, flow)]
    return chain + [step for step in (transcode, flow) if step is not None]


def output_encode_formats(job: JobConfig) -> dict[str, str]:
    """Modality -> extension of the files the chain outputs, for the shard writer.

    ``job.encode_formats``, with the video's changed by ``encode_format`` args or
    ``first_frame`` (``jpg``), the audio's by AudioRateSubsampler's ``encode_format``,
    and ``optical_flow: npy`` when optical flow is computed.
    """
    config = job.config.subsampling
    formats = dict(job.encode_formats)
    if "video" in formats:
        formats["video"] = video_format(config.resolution, config.frame, formats["video"])
    if "audio" in formats and config.audio_rate is not None and config.audio_rate.encode_format:
        formats["audio"] = config.audio_rate.encode_format
    if config.optical_flow is not None or job.stage == "optical_flow":
        formats["optical_flow"] = OPTICAL_FLOW_FORMAT
    return formats


def apply_subsamplers(chain: Sequence[Subsampler], sample: Sample, workdir: Path) -> list[Sample]:
    """Run ``sample`` through every subsampler in order, flattening one-to-many steps."""
    samples = [sample]
    for subsampler in chain:
        samples = [out for current in samples for out in subsampler(current, workdir)]
    return samples
