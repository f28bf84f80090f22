"""``CutsAndFlowSubsampler``: cut detection and optical flow from one decode of the source.

A chain that detects cuts and computes optical flow runs this step in place of the two and of
the transcode between them. The source is decoded once
(:func:`~v2d_core.subsamplers.frames.decode_frames`): cut detection reads every decoded frame's
planes, optical flow takes frames converted at its own rate and short side, and the flow between
consecutive ones is computed as they come. Then the transcode runs (clipping: one sample per
clip), and each output gets the flow of the source's analysis frames inside its span: the pairs
whose two frames both lie in ``[start, end)`` (a pair across a clip's edge belongs to no clip).

The source stands in for the transcoded output when the transcode only chooses which frames
and times exist: clipping at any precision, and FrameSubsampler's ``fps`` method at a rate no
higher than the source's (flow picks frames by time; it runs at the lower of its ``fps`` and
that rate). Otherwise the flow is computed from the transcoded output, as in a chain without
cut detection:

- ResolutionSubsampler: crop and pad change the picture; a scale changes the frames' aspect by
  rounding and, without ``downsample_size``, the pixels the flow is measured in;
- FrameSubsampler's ``keyframe`` and ``first_frame`` methods (other frames, or an image), and
  its ``fps`` above the source's rate, checked per sample (repeated frames, whose flow is zero).

Against flow computed from each clip after clipping (the tolerance, tested on generated scenes):
on the same frames, the same shape, dtype and fps, and the same values when the clip is a stream
copy; a re-encoded clip's frames went through the encoder, the source's did not: each clip's
mean magnitude within 5 % (0.1-2.5 % measured). The analysis frames follow the source's ticks of
``1 / fps`` rather than ticks starting at the clip's first frame, so a clip whose start is off
those ticks has its frames up to ``1 / fps`` later and can have one pair fewer or more. Converting
every frame to the flow's size instead, to pick each clip's own ticks after clipping, would cost
more than the decode itself (0.07 against 0.04 cpu-s for 10 s of 640x360 30 fps video).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from v2d_core.errors import SubsampleError
from v2d_core.sample import Sample
from v2d_core.subsamplers import filters
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.clips import to_seconds
from v2d_core.subsamplers.cut_detection import CutDetectionSubsampler, detect_cuts
from v2d_core.subsamplers.frames import decode_frames
from v2d_core.subsamplers.media import MediaInfo, media_info
from v2d_core.subsamplers.optical_flow import FlowTrack, OpticalFlowSubsampler
from v2d_core.subsamplers.transcode import TranscodeSubsampler


def stands_in(transcode: TranscodeSubsampler | None) -> bool:
    """Whether the source can stand in for ``transcode``'s outputs in optical flow (see above)."""
    if transcode is None:
        return True
    frame = transcode.frame
    return transcode.resolution is None and (frame is None or frame.downsample_method == "fps")


class CutsAndFlowSubsampler(Subsampler):
    """Cut detection, then the transcode (when any), then optical flow, from one decode of the source."""

    def __init__(
        self,
        cuts: CutDetectionSubsampler,
        transcode: TranscodeSubsampler | None,
        flow: OpticalFlowSubsampler,
    ) -> None:
        if cuts.args is None or not stands_in(transcode):
            raise ValueError("a shared decode needs cut detection and a transcode the source stands in for")
        self.cuts = cuts
        self.cut_args = cuts.args
        self.clips_from_cuts = CutDetectionSubsampler(None, cuts_are_clips=cuts.cuts_are_clips)
        self.transcode = transcode
        self.flow = flow

    def _output_fps(self, info: MediaInfo) -> Fraction | None:
        """The frame rate of the transcoded video; None when the source cannot stand in for it."""
        frame = self.transcode.frame if self.transcode is not None else None
        if not info.has_video or not info.fps or frame is None:
            return info.fps
        rate = filters.output_rate(frame, info.fps, exact=False)
        return rate if rate is not None and rate <= info.fps else None

    def __call__(self, sample: Sample, workdir: Path) -> list[Sample]:
        video = sample.streams.get("video")
        if video is None:
            raise SubsampleError("cut detection needs a video stream; the sample has none")
        info = media_info(Path(video), "video")
        rate = self._output_fps(info)
        if rate is None or not info.fps:
            return self._one_after_another(sample, workdir)
        fps = self.flow.analysis_fps(rate)
        track, times = self._decode(sample, Path(video), info, fps or (rate if rate < info.fps else None))
        outputs = self.transcode(sample, workdir) if self.transcode is not None else [sample]
        clipped = self.transcode is not None and self.transcode.clipping is not None
        slack = 0.5 / float(info.fps)  # half a source frame: timestamps are rounded
        for output in outputs:
            if "video" not in output.streams:
                raise SubsampleError("optical flow needs a video stream; the sample has none")
            first, last = _inside(times, output, slack) if clipped else (0, len(times))
            flow, per_frame = track.between(first, last)
            self.flow.attach(output, flow, per_frame, fps or float(rate), workdir)
        return outputs

    def _decode(
        self, sample: Sample, path: Path, info: MediaInfo, fps: Fraction | float | None
    ) -> tuple[FlowTrack, list[float]]:
        """Cuts into ``sample``'s metadata and the source's flow with each analysis frame's time,
        from one decode: cut detection reads every decoded frame's planes, flow takes its own."""
        decoded = decode_frames(
            path,
            [self.flow.request(info, float(fps) if fps else None)],
            timeout=self.cut_args.timeout + self.flow.args.timeout,
            what="cut detection and optical flow",
            max_pixels=self.cuts.max_pixels,
        )
        track, times = self.flow.track(), []

        def cut_frames() -> Iterator[av.VideoFrame]:
            for each in decoded:
                if each.arrays:
                    if each.time is None:
                        raise SubsampleError(
                            "optical flow of clips needs frame timestamps; the video has none"
                        )
                    track.add(each.arrays[0])
                    times.append(each.time)
                yield each.frame

        sample.metadata["cuts"] = detect_cuts(path, self.cut_args, self.cuts.max_pixels, frames=cut_frames())
        self.clips_from_cuts(sample, Path())
        return track, times

    def _one_after_another(self, sample: Sample, workdir: Path) -> list[Sample]:
        """The three steps, each decoding its own input (a source that cannot stand in)."""
        samples = self.cuts(sample, workdir)
        if self.transcode is not None:
            samples = [out for current in samples for out in self.transcode(current, workdir)]
        return [out for current in samples for out in self.flow(current, workdir)]


def _inside(times: list[float], clip: Sample, slack: float) -> tuple[int, int]:
    """The analysis frames inside ``clip``'s span, as ``[first, last)`` indices."""
    (span,) = clip.metadata["clips"]
    start, end = to_seconds(span[0]), to_seconds(span[1])
    inside = [index for index, time in enumerate(times) if start - slack <= time < end - slack]
    return (inside[0], inside[-1] + 1) if inside else (0, 0)
