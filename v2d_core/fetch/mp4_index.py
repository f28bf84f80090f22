"""Is an mp4/mov whole? Answered from its index (the ``moov`` box) alone, without PyAV.

An mp4 lists, per track, every sample's size (``stsz``), how samples group into chunks
(``stsc``) and where each chunk starts (``stco``/``co64``). :func:`read_index` reads those
tables and checks that every sample of every video and audio track lies inside the file:
a file cut anywhere in its media data fails that (:class:`NotMediaError`), and reading the
index costs a fraction of a millisecond where demuxing with PyAV cost a few.

It only answers for the plain case: one ``moov``, not fragmented, each media track with
one sample description, samples, a duration and (video) a known frame size within
``max_pixels``. Anything else (no ``moov``, a cut header, an odd table, zero durations, a
frame size to refuse) gives ``None``, and the caller checks the file the thorough way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from v2d_core.errors import NotMediaError
from v2d_core.fetch.base import MediaInfo

# (offset, length) -> the bytes there (fewer at the end of the file)
Read = Callable[[int, int], bytes | memoryview]

HANDLERS = {b"vide": "video", b"soun": "audio"}
MEDIA_PATH = (b"mdia", b"minf", b"stbl")


class _Unreadable(Exception):
    """The index is not the plain kind this module answers for."""


@dataclass(frozen=True, slots=True)
class _Track:
    kind: str
    duration: float
    data_end: int  # one past the last byte of its last sample


def read_index(read: Read, size: int, max_pixels: int) -> MediaInfo | None:
    """The index of the ``size``-byte file ``read`` reads, or None when it is not a plain mp4 index.

    Raises :class:`NotMediaError` when a track's samples reach past the end of the file.
    """
    try:
        moov = _find_moov(read, size)
        if moov is None:
            return None
        tracks = _tracks(moov, max_pixels)
    except (_Unreadable, struct.error, ValueError):
        return None
    if not tracks:
        return None
    for track in tracks:
        if track.data_end > size:
            raise NotMediaError(
                f"truncated or corrupt media: the {track.kind} samples reach byte {track.data_end}, "
                f"the file has {size} bytes"
            )
    return MediaInfo(
        has_video=any(t.kind == "video" for t in tracks),
        has_audio=any(t.kind == "audio" for t in tracks),
        duration=max(t.duration for t in tracks),
    )


def _find_moov(read: Read, size: int) -> memoryview | None:
    """The payload of the file's one ``moov`` box; None if it is cut or the file is fragmented."""
    moov = None
    at = 0
    while at + 8 <= size:
        kind, header, length = _box_header(read(at, 16), size - at)
        if kind == b"moof":
            raise _Unreadable("fragmented")
        if kind == b"moov":
            if moov is not None or at + length > size:
                raise _Unreadable("moov twice, or cut")
            moov = memoryview(read(at + header, length - header))
        at += length
    return moov


def _box_header(data: bytes | memoryview, room: int) -> tuple[bytes, int, int]:
    """Type, header length and total length of the box starting ``data``; ``room`` bytes remain."""
    length, kind = struct.unpack_from(">I4s", data)
    header = 8
    if length == 1:
        (length,) = struct.unpack_from(">Q", data, 8)
        header = 16
    elif length == 0:
        length = room
    if length < header:
        raise _Unreadable("box shorter than its header")
    return bytes(kind), header, length


def _children(data: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    at = 0
    while at + 8 <= len(data):
        kind, header, length = _box_header(data[at : at + 16], len(data) - at)
        if at + length > len(data):
            raise _Unreadable("child box past its parent")
        yield kind, data[at + header : at + length]
        at += length


def _child(data: memoryview, kind: bytes) -> memoryview:
    for name, payload in _children(data):
        if name == kind:
            return payload
    raise _Unreadable(f"no {kind!r} box")


def _tracks(moov: memoryview, max_pixels: int) -> list[_Track]:
    tracks = []
    for kind, payload in _children(moov):
        if kind == b"mvex":
            raise _Unreadable("fragmented")
        if kind == b"trak":
            track = _track(payload, max_pixels)
            if track is not None:
                tracks.append(track)
    return tracks


def _track(trak: memoryview, max_pixels: int) -> _Track | None:
    mdia = _child(trak, b"mdia")
    hdlr = _child(mdia, b"hdlr")
    kind = HANDLERS.get(bytes(hdlr[8:12]))
    if kind is None:
        return None  # subtitles, timecodes, hints: not media this check answers for
    duration = _duration(_child(mdia, b"mdhd"))
    stbl = _child(_child(mdia, b"minf"), b"stbl")
    if kind == "video":
        _check_frame_size(_child(stbl, b"stsd"), max_pixels)
    return _Track(kind, duration, _data_end(stbl))


def _duration(mdhd: memoryview) -> float:
    if mdhd[0] == 1:
        timescale, duration = struct.unpack_from(">IQ", mdhd, 20)
    else:
        timescale, duration = struct.unpack_from(">II", mdhd, 12)
    if not timescale or not duration:
        raise _Unreadable("no duration")
    return float(duration / timescale)


def _check_frame_size(stsd: memoryview, max_pixels: int) -> None:
    """One visual sample description whose frame size is known and allowed (else: the thorough way)."""
    (count,) = struct.unpack_from(">I", stsd, 4)
    if count != 1:
        raise _Unreadable("not one sample description")
    width, height = struct.unpack_from(">HH", stsd, 8 + 32)
    if not width or not height or width * height > max_pixels:
        raise _Unreadable("frame size for the thorough check to judge")


def _data_end(stbl: memoryview) -> int:
    """One past the last byte of the track's samples, from its sample, chunk and offset tables."""
    sizes = _sample_sizes(_child(stbl, b"stsz"))
    offsets = _chunk_offsets(stbl)
    stsc = _child(stbl, b"stsc")
    (runs,) = struct.unpack_from(">I", stsc, 4)
    table = np.frombuffer(stsc, ">u4", runs * 3, 8).reshape(runs, 3).astype(np.int64)
    first_chunks, per_chunk = table[:, 0], table[:, 1]
    run_lengths = np.diff(np.append(first_chunks, len(offsets) + 1))
    if not runs or first_chunks[0] != 1 or (run_lengths <= 0).any() or (per_chunk <= 0).any():
        raise _Unreadable("sample-to-chunk table")
    samples_per_chunk = np.repeat(per_chunk, run_lengths)
    if int(samples_per_chunk.sum()) != len(sizes):
        raise _Unreadable("chunks and samples disagree")
    ends = np.cumsum(samples_per_chunk)
    sums = np.concatenate(([0], np.cumsum(sizes)))
    return int((offsets + sums[ends] - sums[ends - samples_per_chunk]).max())


def _sample_sizes(stsz: memoryview) -> np.ndarray:
    size, count = struct.unpack_from(">II", stsz, 4)
    if not count:
        raise _Unreadable("no samples")
    if size:
        return np.full(count, size, dtype=np.int64)
    return np.frombuffer(stsz, ">u4", count, 12).astype(np.int64)


def _chunk_offsets(stbl: memoryview) -> np.ndarray:
    for kind, dtype in ((b"stco", ">u4"), (b"co64", ">u8")):
        try:
            table = _child(stbl, kind)
        except _Unreadable:
            continue
        (count,) = struct.unpack_from(">I", table, 4)
        return np.frombuffer(table, dtype, count, 8).astype(np.int64)
    raise _Unreadable("no chunk offsets")
