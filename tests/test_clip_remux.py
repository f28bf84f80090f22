"""Stream-copied clips cut in the worker (PyAV) are the clips ``ffmpeg -ss -t -c copy`` writes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import av
import pytest

from v2d_core.errors import FFmpegError, SubsampleError
from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.sample import Sample
from v2d_core.subsamplers import runner
from v2d_core.subsamplers.chain import apply_subsamplers
from v2d_core.subsamplers.cut_detection import CutDetectionSubsampler
from v2d_core.subsamplers.settings import ClippingArgs, CutDetectionArgs
from v2d_core.subsamplers.transcode import TranscodeSubsampler
from v2d_core.testing.scenes import make_scene_video

FPS = 30
# cuts at frames 80 and 165 (mid-GOP: keyframes every 60 frames), true lengths 80, 85, 55 frames
SCENES = [("testsrc2", 80 / FPS), ("smptebars", 85 / FPS), ("rgbtestsrc", 55 / FPS)]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("remux")
    return make_scene_video(folder / "scenes.mp4", SCENES, width=320, height=180, fps=FPS, gop=2 * FPS)


def ffmpeg_copy(source: Path, start: float, end: float, target: Path) -> Path:
    """Today's reference: the stream copy the ffmpeg command makes of one span."""
    argv = [ffmpeg_exe(), "-nostdin", "-v", "error", "-ss", f"{start:.6f}", "-t", f"{end - start:.6f}"]
    argv += ["-i", str(source), "-map", "0:v?", "-map", "0:a?", "-c", "copy", str(target)]
    subprocess.run(argv, check=True, timeout=60)
    return target


def layout(path: Path) -> dict[str, Any]:
    """What a player and a trainer see of a clip: each stream's packets (count, first and last
    timestamps, duration) and the video frames it shows (count, first and last time)."""
    seen: dict[str, Any] = {}
    with av.open(str(path)) as container:
        count = len(container.streams)
    for index in range(count):
        with av.open(str(path)) as container:
            stream = container.streams[index]
            stamps = [(p.pts, p.dts) for p in container.demux(stream) if p.size]
            seen[stream.type] = (
                len(stamps),
                stamps[0],
                stamps[-1],
                float(stream.duration * stream.time_base),
            )
    with av.open(str(path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
        seen["shown"] = (len(times), times[0], times[-1])
    return seen


def no_ffmpeg_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an ffmpeg process was started")

    monkeypatch.setattr(runner, "run", refuse)


def test_clips_cut_in_the_worker_are_ffmpeg_stream_copies(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut detection's scenes, clipped at 1.3.0's default precision, without an ffmpeg process:
    each clip has the packets, lead-in, frames and duration of ffmpeg's ``-ss -t -c copy``."""
    no_ffmpeg_process(monkeypatch)
    chain = [
        CutDetectionSubsampler(CutDetectionArgs(), cuts_are_clips=True),
        TranscodeSubsampler(clipping=ClippingArgs(min_length=1.0)),
    ]
    clips = apply_subsamplers(chain, Sample(key="k", url="u", streams={"video": scenes}), tmp_path)
    spans = [clip.metadata["clips"][0] for clip in clips]
    assert [round(start * FPS) for start, _ in spans] == [0, 80, 165]
    for clip, (start, end) in zip(clips, spans, strict=True):
        reference = ffmpeg_copy(scenes, start, end, tmp_path / f"{clip.key}.reference.mp4")
        assert layout(clip.streams["video"]) == layout(reference)
    # a clip starting mid-GOP shows its own frames only: [80, 165) after a 20-frame lead-in
    shown, first, last = layout(clips[1].streams["video"])["shown"]
    assert (shown, first, last) == (85, 0.0, pytest.approx(84 / FPS))
    assert layout(clips[1].streams["video"])["video"][0] == 105


@pytest.mark.parametrize(
    "options",
    [["-bf", "3", "-g", "48"], ["-bf", "2", "-g", "50", "-output_ts_offset", "1.5"]],
    ids=["b-frames", "late-start"],
)
def test_reordered_frames_and_a_late_start_are_cut_as_ffmpeg_cuts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    """Decode times before presentation times (B-frames), and a source whose timestamps start at
    1.5 s: spans count from the media's start, and each clip is ffmpeg's copy of it."""
    source = tmp_path / "source.mov"
    argv = [
        ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=30:duration=8",
    ]
    argv += ["-f", "lavfi", "-i", "sine=duration=8", "-c:v", "libx264", "-preset", "fast", *options]
    subprocess.run([*argv, "-c:a", "aac", "-shortest", str(source)], check=True, timeout=60)
    no_ffmpeg_process(monkeypatch)
    spans = [[0.1, 1.0333333], [1.0333334, 2.5], [2.5, 3.5166666666], [3.98, 7.5]]
    sample = Sample(key="k", url="u", streams={"video": source}, metadata={"clips": spans})
    clips = TranscodeSubsampler(clipping=ClippingArgs())(sample, tmp_path)
    for clip, (start, end) in zip(clips, spans, strict=True):
        reference = ffmpeg_copy(source, start, end, tmp_path / f"{clip.key}.reference.mp4")
        assert layout(clip.streams["video"]) == layout(reference)


def test_separate_audio_files_are_cut_in_the_worker_too(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = tmp_path / "sound.m4a"
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(scenes), "-vn", "-c", "copy", str(audio)],
        check=True,
        timeout=60,
    )
    no_ffmpeg_process(monkeypatch)
    sample = Sample(
        key="k", url="u", streams={"video": scenes, "audio": audio}, metadata={"clips": [[1.0, 3.0]]}
    )
    (clip,) = TranscodeSubsampler(clipping=ClippingArgs())(sample, tmp_path)
    reference = ffmpeg_copy(audio, 1.0, 3.0, tmp_path / "reference.m4a")
    with av.open(str(clip.streams["audio"])) as cut, av.open(str(reference)) as expected:
        assert [bytes(p) for p in cut.demux(audio=0) if p.size] == [
            bytes(p) for p in expected.demux(audio=0) if p.size
        ]
    assert layout(clip.streams["video"])["shown"][0] == 2 * FPS


def test_a_source_the_worker_does_not_remux_is_cut_by_ffmpeg(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Matroska source (another demuxer's seek) goes to the ffmpeg process, with the same clips."""
    source = tmp_path / "scenes.mkv"
    subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(scenes), "-c", "copy", str(source)],
        check=True,
        timeout=60,
    )
    started: list[list[str]] = []
    real_run = runner.run

    def counting(outputs: Any, **kwargs: Any) -> None:
        started.append(runner.command(outputs))
        real_run(outputs, **kwargs)

    monkeypatch.setattr(runner, "run", counting)
    sample = Sample(key="k", url="u", streams={"video": source}, metadata={"clips": [[0.0, 2.0], [2.0, 4.0]]})
    clips = TranscodeSubsampler(clipping=ClippingArgs())(sample, tmp_path)
    assert len(started) == 1
    assert [layout(clip.streams["video"])["shown"][0] for clip in clips] == [60, 60]


def test_a_clip_neither_can_write_fails_the_sample_with_the_reason(scenes: Path, tmp_path: Path) -> None:
    """H.264 cannot go into a WebM file: the worker's copy gives up, ffmpeg's fails, the sample
    fails with ffmpeg's reason (a failed-sample row, not a crash)."""
    transcode = TranscodeSubsampler(clipping=ClippingArgs(), encode_formats={"video": "webm"})
    sample = Sample(key="k", url="u", streams={"video": scenes}, metadata={"clips": [[0.0, 2.0]]})
    with pytest.raises(FFmpegError, match=r"(?i)webm"):
        transcode(sample, tmp_path)


def test_an_unreadable_source_fails_the_sample(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    sample = Sample(key="k", url="u", streams={"video": broken}, metadata={"clips": [[0.0, 1.0]]})
    with pytest.raises(SubsampleError):
        TranscodeSubsampler(clipping=ClippingArgs())(sample, tmp_path)
