"""Shard files written past the page cache: byte for byte what was given, whatever the sizes, on
disk and on tmpfs (which refused ``O_DIRECT`` before Linux 6.6; then the file is a plain one)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from v2d_core.direct_file import ALIGN, STAGING_BYTES, DirectFile

SIZES = (0, 1, 511, 512, ALIGN - 1, ALIGN + 3, STAGING_BYTES - 7, STAGING_BYTES, STAGING_BYTES + ALIGN + 5)


def pieces() -> list[bytes]:
    return [os.urandom(size) for size in SIZES]


def folders(tmp_path: Path) -> list[Path]:
    """The test's disk folder, and tmpfs when the machine has one."""
    shm = Path("/dev/shm")
    return [tmp_path, *([shm] if shm.is_dir() and os.access(shm, os.W_OK) else [])]


@pytest.mark.parametrize("where", ["disk", "tmpfs"])
def test_every_byte_arrives_in_order_whatever_the_write_sizes(tmp_path: Path, where: str) -> None:
    found = folders(tmp_path)
    if where == "tmpfs" and len(found) < 2:
        pytest.skip("no writable /dev/shm (tmpfs) on this machine")
    path = found[0 if where == "disk" else 1] / f"direct-{os.getpid()}-{tmp_path.name}.bin"
    given = pieces()
    try:
        with DirectFile(str(path)) as sink:
            for piece in given:
                assert sink.write(piece) == len(piece)
            sink.write(memoryview(b"tail"))
        assert path.read_bytes() == b"".join(given) + b"tail"
    finally:
        path.unlink(missing_ok=True)


def test_write_from_copies_a_file_and_stops_at_its_end(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    body = os.urandom(STAGING_BYTES + 12_345)
    source.write_bytes(body)
    target = tmp_path / "target.bin"
    with DirectFile(str(target)) as sink, source.open("rb") as reader:
        sink.write(b"head")
        assert sink.write_from(reader, len(body)) == len(body)
    with DirectFile(str(target)) as sink, source.open("rb") as reader:
        assert sink.write_from(reader, len(body) + 100) == len(body)  # a file shorter than asked
    assert target.read_bytes() == body


def test_a_tar_written_through_it_reads_back_member_for_member(tmp_path: Path) -> None:
    members = {f"{index:03d}.mp4": os.urandom(size) for index, size in enumerate(SIZES)}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "shard.tar"
    with DirectFile(str(path)) as sink:
        sink.write(buffer.getvalue())
    with tarfile.open(path) as tar:
        read = {member.name: tar.extractfile(member).read() for member in tar}  # type: ignore[union-attr]
    assert read == members


def test_an_existing_file_is_replaced_not_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "again.bin"
    path.write_bytes(b"x" * (3 * ALIGN))
    with DirectFile(str(path)) as sink:
        sink.write(b"new")
    assert path.read_bytes() == b"new"


def test_a_closed_file_refuses_writes_as_a_python_file_does(tmp_path: Path) -> None:
    sink = DirectFile(str(tmp_path / "closed.bin"))
    sink.write(b"x" * 10)
    sink.close()
    sink.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed file"):
        sink.write(b"more")
    assert (tmp_path / "closed.bin").read_bytes() == b"x" * 10
