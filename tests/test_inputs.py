"""Url-list readers: every format gives the same rows and columns, over local and memory:// paths."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pytest

from v2d_core.errors import ConfigError, InputError
from v2d_core.inputs import url_lists
from v2d_core.inputs.url_lists import clips_json, input_columns, input_files, read_batches
from v2d_core.job import JobConfig

ROWS = 50
FORMATS = ("csv", "tsv", "tsv.gz", "json", "jsonl", "parquet")


def _frame() -> pd.DataFrame:
    """Source data with renamed columns, awkward captions and list-valued clips."""
    captions = [
        f'clip {i}, with "quotes", ünïcode and\na newline' if i % 5 == 0 else f"c{i}" for i in range(ROWS)
    ]
    return pd.DataFrame(
        {
            "link": [f"https://example.com/v/{i}.mp4" for i in range(ROWS)],
            "text": captions,
            "spans": [[[0.0, 1.5], [2.0, float(i)]] for i in range(ROWS)],
            "id": list(range(ROWS)),
            "score": [i / 4 for i in range(ROWS)],
            "unused": ["x"] * ROWS,
        }
    )


def _write(frame: pd.DataFrame, path: str, fmt: str) -> str:
    """Write ``frame`` the way video2dataset users produce url lists (pandas), to any fsspec path."""
    if "spans" in frame:  # csv cells hold the list's Python repr, as pandas writes it
        frame_text = frame.assign(spans=[None if spans is None else str(spans) for spans in frame["spans"]])
    else:
        frame_text = frame
    with fsspec.open(path, "wb") as handle:
        if fmt == "csv":
            frame_text.to_csv(handle, index=False)
        elif fmt in ("tsv", "tsv.gz"):
            data = frame_text.to_csv(index=False, sep="\t").encode()
            handle.write(gzip.compress(data) if fmt == "tsv.gz" else data)
        elif fmt == "json":
            handle.write(frame.to_json(orient="records").encode())
        elif fmt == "jsonl":
            handle.write(frame.to_json(orient="records", lines=True).encode())
        elif fmt == "parquet":
            frame.to_parquet(handle, index=False)
        else:
            handle.write("".join(f"{url}\n" for url in frame["link"]).encode())
    return path


def _job(url_list: str | list[str], fmt: str, **options: object) -> JobConfig:
    defaults: dict[str, object] = {
        "url_col": "link",
        "caption_col": "text",
        "clip_col": "spans",
        "save_additional_columns": ["score", "id"],
    }
    return JobConfig(url_list=url_list, input_format=fmt, **(defaults | options))  # type: ignore[arg-type]


def _read(path: str, job: JobConfig) -> pa.Table:
    batches = list(read_batches(path, job))
    return pa.Table.from_batches(batches)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny batches and blocks, so that streaming and a cut csv head are exercised."""
    monkeypatch.setattr(url_lists, "BATCH_ROWS", 7)
    monkeypatch.setattr(url_lists, "BLOCK_BYTES", 256)
    monkeypatch.setattr(url_lists, "INFER_BYTES", 300)


@pytest.fixture
def memory_root() -> str:
    root = f"memory://v2d-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _expected() -> pa.Table:
    frame = _frame()
    return pa.table(
        {
            "url": pa.array(frame["link"], pa.string()),
            "caption": pa.array(frame["text"], pa.string()),
            "clips": pa.array([json.dumps(spans) for spans in frame["spans"]], pa.string()),
            "score": pa.array(frame["score"], pa.float64()),
            "id": pa.array(frame["id"], pa.int64()),
        }
    )


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_same_rows_and_columns(tmp_path: Path, fmt: str) -> None:
    path = _write(_frame(), str(tmp_path / f"list.{fmt}"), fmt)
    job = _job(path, fmt)
    table = _read(path, job)
    assert table.column_names == ["url", "caption", "clips", "score", "id"] == input_columns(job)
    assert table.equals(_expected()), table.to_pandas().head()


@pytest.mark.usefixtures("small_blocks")
def test_txt_is_one_url_per_line(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("https://a/1.mp4\r\n\n  https://a/2.mp4  \nhttps://a/3.mp4?x=1,2")
    table = _read(str(path), JobConfig(url_list=str(path), url_col="ignored"))
    assert table.column_names == ["url"]
    assert table["url"].to_pylist() == ["https://a/1.mp4", "https://a/2.mp4", "https://a/3.mp4?x=1,2"]


@pytest.mark.parametrize("fmt", ["txt", *FORMATS])
def test_urls_agree_across_formats(tmp_path: Path, fmt: str) -> None:
    path = _write(_frame(), str(tmp_path / f"list.{fmt}"), fmt)
    job = JobConfig(url_list=path, input_format=fmt, url_col="link")
    assert _read(path, job).to_pydict() == {"url": list(_frame()["link"])}


def test_folder_lists_sorted_files_of_the_format_only(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "c.parquet", "d.csv.bak"):
        (tmp_path / name).write_text("url\nhttps://x\n")
    (tmp_path / "sub.csv").mkdir()
    assert input_files(str(tmp_path), "csv") == [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert input_files([str(tmp_path / "c.parquet"), str(tmp_path)], "csv") == [
        str(tmp_path / "c.parquet"),
        str(tmp_path / "a.csv"),
        str(tmp_path / "b.csv"),
    ]


def test_folder_without_matching_files_or_missing_path_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("url\n")
    with pytest.raises(InputError, match=r"no \*\.parquet file"):
        input_files(str(tmp_path), "parquet")
    with pytest.raises(InputError, match="does not exist"):
        input_files(str(tmp_path / "nope.csv"), "csv")
    with pytest.raises(InputError, match="empty"):
        input_files([], "csv")


def test_memory_fsspec_folder_and_files(memory_root: str) -> None:
    frame = _frame()
    _write(frame.iloc[:20], f"{memory_root}/lists/part-1.parquet", "parquet")
    _write(frame.iloc[20:], f"{memory_root}/lists/part-0.parquet", "parquet")
    files = input_files(f"{memory_root}/lists", "parquet")
    assert [f.rsplit("/", 1)[1] for f in files] == ["part-0.parquet", "part-1.parquet"]
    assert all(f.startswith("memory://") for f in files)
    job = _job(f"{memory_root}/lists", "parquet")
    urls = [url for path in files for url in _read(path, job)["url"].to_pylist()]
    assert urls == list(frame["link"].iloc[20:]) + list(frame["link"].iloc[:20])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("option", "missing"), [("url_col", "url"), ("caption_col", "caption")])
def test_missing_column_names_it_and_lists_existing_columns(
    tmp_path: Path, fmt: str, option: str, missing: str
) -> None:
    path = _write(_frame(), str(tmp_path / f"list.{fmt}"), fmt)
    with pytest.raises(InputError) as caught:
        _read(path, _job(path, fmt, **{option: missing}))
    message = str(caught.value)
    assert f"'{missing}' ({option})" in message
    assert path in message
    assert "link, text, spans, id, score, unused" in message


def test_txt_has_only_a_url_column(tmp_path: Path) -> None:
    path = _write(_frame(), str(tmp_path / "list.txt"), "txt")
    with pytest.raises(InputError, match=r"'text' \(caption_col\).*columns are: url"):
        _read(path, JobConfig(url_list=path, caption_col="text"))


def test_repeated_output_column_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="repeat"):
        input_columns(
            JobConfig(url_list="x.csv", input_format="csv", url_col="link", save_additional_columns=["url"])
        )


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        (
            [[["00:00:01.000", "00:00:02.500"], ["00:01:00", "00:01:05"]], None, [["00:00:03", "00:00:04"]]],
            [
                '[["00:00:01.000", "00:00:02.500"], ["00:01:00", "00:01:05"]]',
                None,
                '[["00:00:03", "00:00:04"]]',
            ],
        ),
        (
            [[[0.0, 2.0], [3.0, 5.5]], None, [[3.0, 4.0]]],
            ["[[0.0, 2.0], [3.0, 5.5]]", None, "[[3.0, 4.0]]"],
        ),
    ],
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_clips_are_the_same_json_text_in_every_format(
    tmp_path: Path, fmt: str, spans: list[object], expected: list[str | None]
) -> None:
    frame = pd.DataFrame({"link": ["a", "b", "c"], "spans": spans})
    path = _write(frame, str(tmp_path / f"list.{fmt}"), fmt)
    table = _read(path, JobConfig(url_list=path, input_format=fmt, url_col="link", clip_col="spans"))
    assert table.schema.field("clips").type == pa.string()
    assert table["clips"].to_pylist() == expected


def test_json_clips_may_mix_seconds_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"url": "a", "s": [["00:00:01", "00:00:02"]]}, {"url": "b", "s": [1, 2]}]))
    table = _read(str(path), JobConfig(url_list=str(path), input_format="json", clip_col="s"))
    assert table["clips"].to_pylist() == ['[["00:00:01", "00:00:02"]]', "[[1.0, 2.0]]"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[[0, 2], [3.5, 5]]", "[[0.0, 2.0], [3.5, 5.0]]"),
        ("[(0, 2)]", "[[0.0, 2.0]]"),
        ([[0.0, 2.0]], "[[0.0, 2.0]]"),
        ([0, 2], "[[0.0, 2.0]]"),
        ("[['00:00:01', 2]]", '[["00:00:01", 2.0]]'),
        ([], "[]"),
        (None, None),
        ("not clips", "not clips"),
        ("[[1, 2, 3]]", "[[1, 2, 3]]"),
        ([[True, 2]], "[[true, 2]]"),
    ],
)
def test_clips_json(value: object, expected: str | None) -> None:
    assert clips_json(value) == expected


def _corrupt(path: Path) -> None:
    path.write_bytes(b"PAR1 this is not parquet")


def _bad_json(path: Path) -> None:
    path.write_text('[{"url": "a"},')


def _bad_gzip(path: Path) -> None:
    path.write_bytes(b"not gzip at all")


def _type_changes_late(path: Path) -> None:
    path.write_text("url,n\n" + "".join(f"u{i},{i}\n" for i in range(2000)) + "u,abc\n")


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize(
    ("name", "fmt", "make", "options"),
    [
        ("list.parquet", "parquet", _corrupt, {}),
        ("list.json", "json", _bad_json, {}),
        ("list.tsv.gz", "tsv.gz", _bad_gzip, {}),
        ("list.csv", "csv", _type_changes_late, {"save_additional_columns": ["n"]}),
    ],
)
def test_bad_file_is_an_input_error_with_path(
    tmp_path: Path, name: str, fmt: str, make: Callable[[Path], None], options: dict[str, object]
) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError, match="cannot read url list") as caught:
        _read(str(path), JobConfig(url_list=str(path), input_format=fmt, **options))  # type: ignore[arg-type]
    assert str(path) in str(caught.value)


def test_webdataset_is_not_a_url_list() -> None:
    with pytest.raises(InputError, match="not a url list"):
        next(read_batches("x.tar", JobConfig(url_list="x.tar", input_format="webdataset", stage="subset")))


@pytest.mark.usefixtures("small_blocks")
def test_column_empty_in_first_block_is_read_as_string(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("url,note\n" + "".join(f"u{i},\n" for i in range(300)) + "u,late note\n")
    table = _read(
        str(path), JobConfig(url_list=str(path), input_format="csv", save_additional_columns=["note"])
    )
    assert table.schema.field("note").type == pa.string()
    assert table["note"].to_pylist() == [None] * 300 + ["late note"]


@pytest.mark.usefixtures("small_blocks")
def test_jsonl_types_settle_on_the_first_batch(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    rows = [{"url": f"u{i}", "n": None} for i in range(20)] + [{"url": 7, "n": 3, "x": 1}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    table = _read(
        str(path), JobConfig(url_list=str(path), input_format="jsonl", save_additional_columns=["n"])
    )
    assert table.schema.types == [pa.string(), pa.string()]
    assert table.to_pydict() == {"url": [f"u{i}" for i in range(20)] + ["7"], "n": [None] * 20 + ["3"]}


def test_json_with_pandas_default_orient(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    _frame().to_json(path)  # {"column": {"index": value}}
    assert _read(str(path), _job(str(path), "json")).equals(_expected())
