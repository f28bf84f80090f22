"""plan_shards: ids depend only on the input, each file starts a shard, memory stays bounded."""

from __future__ import annotations

import dataclasses
import gc
import json
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from v2d_core.config import Config, ReadingConfig, StorageConfig
from v2d_core.errors import InputError
from v2d_core.inputs.sharding import ShardSpec, plan_shards, read_shard_input
from v2d_core.job import JobConfig


def _write_list(path: Path, first: int, rows: int) -> None:
    """A csv url list of ``rows`` rows numbered from ``first``."""
    lines = "".join(f"https://example.com/{i}.mp4,caption {i}\n" for i in range(first, first + rows))
    path.write_text("url,text\n" + lines)


def _job(url_list: str, per_shard: int = 1000, **reading: object) -> JobConfig:
    config = Config(
        storage=StorageConfig(number_sample_per_shard=per_shard),
        reading=ReadingConfig(**reading),  # type: ignore[arg-type]
    )
    return JobConfig(url_list=url_list, input_format="csv", caption_col="text", config=config)


@pytest.fixture
def two_files(tmp_path: Path) -> str:
    folder = tmp_path / "lists"
    folder.mkdir()
    _write_list(folder / "a.csv", 0, 2500)
    _write_list(folder / "b.csv", 2500, 700)
    return str(folder)


def _urls(spec: ShardSpec) -> list[str]:
    return read_shard_input(spec)["url"].to_pylist()


def test_each_file_starts_a_shard_and_ids_are_consecutive(two_files: str, tmp_path: Path) -> None:
    shard_dir = tmp_path / "shards"
    specs = list(plan_shards(_job(two_files), str(shard_dir)))
    assert [(s.shard_id, s.row_count) for s in specs] == [(0, 1000), (1, 1000), (2, 500), (3, 700)]
    assert [s.input_path for s in specs] == [str(shard_dir / f"0000{i}.arrow") for i in range(4)]
    assert sorted(p.name for p in shard_dir.iterdir()) == [f"0000{i}.arrow" for i in range(4)]  # no temp left
    urls = [url for spec in specs for url in _urls(spec)]
    assert urls == [f"https://example.com/{i}.mp4" for i in range(3200)]
    table = read_shard_input(specs[3])
    assert table.column_names == ["url", "caption"]
    assert table["caption"][0].as_py() == "caption 2500"


def test_skipped_shards_keep_every_other_id(two_files: str, tmp_path: Path) -> None:
    everything = {s.shard_id: _urls(s) for s in plan_shards(_job(two_files), str(tmp_path / "all"))}
    specs = list(plan_shards(_job(two_files), str(tmp_path / "some"), skip={1}))
    assert [(s.shard_id, s.row_count) for s in specs] == [(0, 1000), (2, 500), (3, 700)]
    assert {s.shard_id: _urls(s) for s in specs} == {i: everything[i] for i in (0, 2, 3)}
    assert not (tmp_path / "some" / "00001.arrow").exists()


def test_sampler_chooses_among_shards_not_skipped(two_files: str, tmp_path: Path) -> None:
    seen: list[list[int]] = []

    def every_other(ids: list[int]) -> list[int]:
        seen.append(ids)
        return ids[::2]

    job = _job(two_files, sampler=every_other)
    specs = list(plan_shards(job, str(tmp_path / "shards"), skip={0}))
    assert seen == [[1, 2, 3]]
    assert [(s.shard_id, s.row_count) for s in specs] == [(1, 1000), (3, 700)]


def test_exact_multiple_and_single_row_shards(tmp_path: Path) -> None:
    _write_list(tmp_path / "a.csv", 0, 6)
    specs = list(plan_shards(_job(str(tmp_path / "a.csv"), per_shard=3), str(tmp_path / "s")))
    assert [(s.shard_id, s.row_count) for s in specs] == [(0, 3), (1, 3)]
    specs = list(plan_shards(_job(str(tmp_path / "a.csv"), per_shard=1), str(tmp_path / "one")))
    assert [s.row_count for s in specs] == [1] * 6
    assert [_urls(s) for s in specs][5] == ["https://example.com/5.mp4"]


def test_shards_on_memory_fsspec(tmp_path: Path) -> None:
    root = f"memory://v2d-shards-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        with fsspec.open(f"{root}/in/list.csv", "w") as handle:
            handle.write("url,text\n" + "".join(f"u{i},c{i}\n" for i in range(25)))
        specs = list(plan_shards(_job(f"{root}/in", per_shard=10), f"{root}/shards"))
        assert [(s.shard_id, s.row_count) for s in specs] == [(0, 10), (1, 10), (2, 5)]
        assert specs[2].input_path == f"{root}/shards/00002.arrow"
        assert _urls(specs[2]) == [f"u{i}" for i in range(20, 25)]
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{root}/shards", detail=False)) == [
            "00000.arrow",
            "00001.arrow",
            "00002.arrow",
        ]
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)


def test_unreadable_shard_input_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read shard input"):
        read_shard_input(ShardSpec(shard_id=0, input_path=str(tmp_path / "nope.arrow"), row_count=1))


def _chunks(rows: int) -> Iterator[pa.Table]:
    """About 150 bytes a row, 10,000 rows at a time."""
    for start in range(0, rows, 10_000):
        ids = range(start, min(rows, start + 10_000))
        yield pa.table(
            {
                "url": [f"https://example.com/videos/{i:07d}.mp4?token={'x' * 40}" for i in ids],
                "text": [f"caption {i} {'lorem ipsum ' * 5}" for i in ids],
            }
        )


def _big_list(path: Path, rows: int) -> None:
    """A url list written chunk by chunk, so the test itself stays small (parquet: a row group each)."""
    with path.open("wb") as handle, ExitStack() as stack:
        for index, chunk in enumerate(_chunks(rows)):
            if path.suffix == ".csv":
                options = pcsv.WriteOptions(include_header=index == 0)
                pcsv.write_csv(chunk, handle, write_options=options)
            elif path.suffix == ".jsonl":
                handle.writelines(json.dumps(row).encode() + b"\n" for row in chunk.to_pylist())
            else:
                if index == 0:
                    writer = stack.enter_context(pq.ParquetWriter(handle, chunk.schema))
                writer.write_table(chunk)


def _tracked(specs: Iterator[ShardSpec], baseline: int) -> tuple[int, int, int]:
    """Shards, rows, and the most Arrow memory held at any shard boundary above ``baseline``."""
    shards = rows = arrow_peak = 0
    for spec in specs:
        shards += 1
        rows += spec.row_count
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - baseline)
    return shards, rows, arrow_peak


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_large_input_is_sharded_with_bounded_memory(tmp_path: Path, fmt: str) -> None:
    rows = 200_000
    path = tmp_path / f"big.{fmt}"
    _big_list(path, rows)
    job = dataclasses.replace(_job(str(path)), input_format=fmt)
    assert path.stat().st_size > (3e6 if fmt == "parquet" else 25e6)  # whole table: ~33 MB in Arrow

    gc.collect()
    baseline = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        shards, counted, arrow_peak = _tracked(plan_shards(job, str(tmp_path / "s")), baseline)
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (shards, counted) == (200, rows)
    # csv: a 1 MiB head for type inference, then 64 KiB blocks read ahead; jsonl and parquet:
    # 4096-row batches (parquet also holds one 10,000-row group).
    assert python_peak < 8e6, python_peak
    assert arrow_peak < 8e6, arrow_peak


def test_a_shard_digest_follows_its_rows_not_how_they_were_read(tmp_path: Path) -> None:
    urls = [f"https://example.com/{i}.mp4" for i in range(2500)]
    captions = [None if i % 7 == 0 else f"caption {i}" for i in range(2500)]
    table = pa.table({"url": urls, "text": captions})
    digests = []
    for name, row_group in (("a", 3), ("b", 1000), ("c", 4096)):  # batches cut each shard differently
        pq.write_table(table, tmp_path / f"{name}.parquet", row_group_size=row_group)
        job = dataclasses.replace(_job(str(tmp_path / f"{name}.parquet")), input_format="parquet")
        digests.append([spec.input_digest for spec in plan_shards(job, str(tmp_path / name))])
    assert digests[0] == digests[1] == digests[2]
    assert len(set(digests[0])) == 3  # 1000 + 1000 + 500 rows, each its own digest

    captions[1500] = "changed"  # one row of the second shard
    pq.write_table(pa.table({"url": urls, "text": captions}), tmp_path / "d.parquet")
    job = dataclasses.replace(_job(str(tmp_path / "d.parquet")), input_format="parquet")
    changed = [spec.input_digest for spec in plan_shards(job, str(tmp_path / "d"))]
    assert [old == new for old, new in zip(digests[0], changed, strict=True)] == [True, False, True]
