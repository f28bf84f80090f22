"""Hostile media made in a second by hand: decompression bombs, files without frames, lying headers."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from v2d_core.ffmpeg_binary import ffmpeg_exe
from v2d_core.testing.media import make_video

# One 16x16 MCU of a flat mid-gray 4:2:0 baseline JPEG with the standard Huffman tables: four luma
# blocks (DC difference 0 = "00", end of block = "1010") and two chroma blocks ("00" + "00").
GRAY_MCU = bytes([0b00101000, 0b10100010, 0b10001010, 0b00000000])
SOF0, SOS, EOI = b"\xff\xc0", b"\xff\xda", b"\xff\xd9"


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", *args], check=True, timeout=60)


def small_jpeg(folder: Path) -> bytes:
    """A 16x16 gray baseline JPEG with the standard Huffman tables (the template of the bombs)."""
    path = folder / "template.jpg"
    ffmpeg(
        *("-f", "lavfi", "-i", "color=c=gray:size=16x16", "-frames:v", "1"),
        *("-c:v", "mjpeg", "-huffman", "default", "-pix_fmt", "yuvj420p", "-f", "mjpeg", str(path)),
    )
    return path.read_bytes()


def gray_jpeg(template: bytes, side: int) -> bytes:
    """A valid ``side`` x ``side`` gray JPEG of 4 bytes per 16x16 block: tiny to store, huge to decode."""
    sof, sos = template.index(SOF0), template.index(SOS)
    header = bytearray(template[:sos])
    header[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    (sos_length,) = struct.unpack(">H", template[sos + 2 : sos + 4])
    scan_header = template[sos : sos + 2 + sos_length]
    return bytes(header) + scan_header + GRAY_MCU * ((side + 15) // 16) ** 2 + EOI


def mjpeg_mp4(path: Path, frames: list[bytes]) -> Path:
    """JPEG frames in an mp4, stream-copied (never decoded); the header takes the first frame's size."""
    stream = path.with_suffix(".mjpeg")
    stream.write_bytes(b"".join(frames))
    ffmpeg("-f", "mjpeg", "-framerate", "1", "-i", str(stream), "-c", "copy", str(path))
    stream.unlink()
    return path


def declare_size(mp4: bytes, side: int) -> bytes:
    """An MJPEG mp4 whose frame, sample entry and track header all declare ``side`` x ``side``."""
    data = bytearray(mp4)
    sof = data.index(SOF0)
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    entry = data.index(b"stsd") + 16  # the first sample entry's type; width and height follow 24 bytes on
    data[entry + 28 : entry + 32] = struct.pack(">HH", side, side)
    tkhd = data.index(b"tkhd")  # version 0: width and height (16.16 fixed point) end the box
    data[tkhd + 80 : tkhd + 88] = struct.pack(">II", side << 16, side << 16)
    return bytes(data)


DURATIONS = ((b"mvhd", 16), (b"tkhd", 20), (b"mdhd", 16), (b"elst", 8))
"""Version-0 boxes and the offset of their duration field after the box type."""
SAMPLE_COUNTS = ((b"stts", 4), (b"stsz", 8), (b"stsc", 4), (b"stco", 4), (b"stss", 4))
"""Sample tables and the offset of their entry (or sample) count after the box type."""


def zeroed(mp4: bytes, fields: tuple[tuple[bytes, int], ...]) -> bytes:
    """An mp4 with one video track whose 4-byte ``fields`` (box, offset after its type) read 0."""
    data = bytearray(mp4)
    for box, offset in fields:
        if box in data:
            at = data.index(box) + 4
            data[at + offset : at + offset + 4] = bytes(4)
    return bytes(data)


def hostile_media(folder: Path) -> dict[str, Path]:
    """Name -> file: good and bad media, each small (the bomb is 4 MB)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "good": make_video(folder / "good.mp4", seconds=1.0),
        "one_frame": make_video(folder / "one_frame.mp4", seconds=0.04, audio=False),
        "audio_only": folder / "audio_only.m4a",
        "audio_in_mp4": folder / "audio_in.mp4",
        "cover_art": folder / "cover_art.m4a",
    }
    sine = ("-f", "lavfi", "-i", "sine=frequency=440:duration=1")
    ffmpeg(*sine, "-c:a", "aac", str(files["audio_only"]))
    ffmpeg(*sine, "-c:a", "aac", str(files["audio_in_mp4"]))
    ffmpeg(
        *sine, *("-f", "lavfi", "-i", "color=c=red:size=64x64:duration=1", "-map", "0", "-map", "1"),
        *("-frames:v", "1", "-c:a", "aac", "-c:v", "mjpeg", "-disposition:v", "attached_pic"),
        str(files["cover_art"]),
    )  # fmt: skip
    one_frame = files["one_frame"].read_bytes()
    files["zero_duration"] = folder / "zero_duration.mp4"  # a video track without a single frame
    files["zero_duration"].write_bytes(zeroed(one_frame, DURATIONS + SAMPLE_COUNTS))
    files["zero_declared"] = folder / "zero_declared.mp4"  # one frame, but every duration says 0
    files["zero_declared"].write_bytes(zeroed(one_frame, DURATIONS))
    good = files["good"].read_bytes()
    files["header_cut"] = folder / "header_cut.mp4"
    files["header_cut"].write_bytes(good[:200])
    files["garbage"] = folder / "garbage.mp4"
    files["garbage"].write_bytes(bytes((i * 7919 + 13) % 256 for i in range(50_000)))
    template = small_jpeg(folder)
    files["bomb"] = mjpeg_mp4(folder / "bomb.mp4", [gray_jpeg(template, 16000)])
    files["lying"] = mjpeg_mp4(folder / "lying.mp4", [template] + [gray_jpeg(template, 12000)] * 3)
    files["declared_20000"] = folder / "declared_20000.mp4"
    files["declared_20000"].write_bytes(
        declare_size(mjpeg_mp4(folder / "small.mp4", [template]).read_bytes(), 20000)
    )
    return files


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields: Any) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for field_name, value in fields.items():
        setattr(info, field_name, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def write_hostile_tar(path: Path, video: bytes, escape: str) -> Path:
    """A shard tar whose member names attack the filesystem (``escape`` is an absolute path to aim at),
    plus links, undecodable names, split samples and hostile json and txt members."""
    record = json.dumps({"url": "http://example.com/\ud800", "caption": "from json", "fps": 25}).encode()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, errors="surrogateescape") as tar:
        _member(tar, "somedir/", type=tarfile.DIRTYPE)  # a folder is no sample
        for name, data in [
            ("00007000.mp4", video),
            ("00007000.txt", b"fine caption"),
            ("../../escape.mp4", video),
            (f"{escape}.mp4", video),
            ("sub/dir/00007001.mp4", video),
            (".mp4", video),
            ("a" * 300 + ".mp4", video),
            ("00007002.mp4", video),
            ("00007002." + "x" * 300, b"an unknown member with a name too long for a file system"),
        ]:
            _member(tar, name, data)
        _member(tar, "00007003.mp4", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _member(tar, "00007004.mp4", type=tarfile.LNKTYPE, linkname="00007000.mp4")
        for name, data in [
            ("\udcff\udcfe01.mp4", video),  # bytes ff fe: not UTF-8
            ("00007005.mp4", video),
            ("00007006.mp4", video),
            ("00007006.json", b'{"caption": 5}'),
            ("00007005.txt", b"late member of an earlier sample"),
            ("00007007.mp4", video),
            ("00007007.txt", b"caf\xe9 \xff\nsecond line\r\nthird"),
            ("00007007.json", record),
            ("00007008.mp4", video),
            ("00007008.json", b"[" * 100_000),
        ]:
            _member(tar, name, data)
    return path
