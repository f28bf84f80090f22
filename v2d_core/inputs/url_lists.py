"""Url-list readers: txt, csv, tsv, tsv.gz, json, jsonl and parquet, over any fsspec url.

:func:`input_files` finds the files of a url list; :func:`read_batches` streams one
of them as Arrow record batches whose columns are renamed and selected as
video2dataset 1.3.0 does: ``url_col`` -> ``url``, ``caption_col`` -> ``caption``,
``clip_col`` -> ``clips``, then ``save_additional_columns`` in order.

Column types: ``url`` and ``caption`` are strings; ``clips`` is a string holding
JSON text of a list of ``[start, end]`` pairs (see :func:`clips_json`); other
columns keep the type the file gives them (csv/tsv: inferred by pyarrow from the
first MiB). A column that is all-null where the type is decided becomes a string.

Hostile lists: a url column whose type is not text (numbers, lists) or a caption column
holding lists or structs is an :class:`InputError` naming the column, raised before any
work starts; a single bad value (a null url, a number in a json cell) goes through and
becomes a failed row. Text is always valid UTF-8: invalid bytes in any text column (and
lone surrogates from JSON ``\\udXXX`` escapes) are replaced by U+FFFD, as
``bytes.decode(errors="replace")`` does; binary parquet columns other than url and caption
keep their bytes. Rows may be of any length (a caption of many MiB): csv/tsv blocks grow
to fit the longest row, up to ``MAX_BLOCK_BYTES``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from v2d_core.arrow_arrays import typed_array
from v2d_core.errors import ConfigError, InputError
from v2d_core.job import JobConfig
from v2d_core.storage import fresh_fs
from v2d_core.text import valid_text

BATCH_ROWS = 4096
"""Rows per batch for txt, json, jsonl and parquet."""
BLOCK_BYTES = 1 << 16
"""Bytes per csv/tsv block while streaming (pyarrow reads ~35 blocks ahead)."""
MAX_BLOCK_BYTES = 1 << 26
"""Largest csv/tsv block tried when a row does not fit in one block (64 MiB)."""
BLOCK_GROWTH = 16
"""Factor by which a csv/tsv block (or the inferred head) grows when a row does not fit."""
INFER_BYTES = 1 << 20
"""Bytes at the head of a csv/tsv file that decide its column types."""

_TEXT_OPTIONS = ("url_col", "caption_col")


@dataclass(frozen=True, slots=True)
class _Column:
    """One output column: where it comes from in the file and which option asked for it."""

    source: str
    name: str
    option: str


def input_files(url_list: str | Sequence[str], input_format: str) -> list[str]:
    """The files to read, in order: a file as is, a folder's ``*.{input_format}`` files sorted."""
    urls = [url_list] if isinstance(url_list, str) else list(url_list)
    if not urls:
        raise InputError("url_list is empty")
    return [path for url in urls for path in _files_at(url, input_format)]


def _files_at(url: str, input_format: str) -> list[str]:
    fs, path = fresh_fs(url)
    if fs.isdir(path):
        suffix = f".{input_format}"
        found = sorted(
            entry["name"]
            for entry in fs.ls(path, detail=True)
            if entry["type"] == "file" and entry["name"].endswith(suffix)
        )
        if not found:
            raise InputError(f"no *{suffix} file in folder {url}")
        return [name if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(name) for name in found]
    if not fs.exists(path):
        raise InputError(f"url list {url} does not exist")
    return [url]


def input_columns(job: JobConfig) -> list[str]:
    """Names of the columns :func:`read_batches` yields for this job, in order."""
    return [column.name for column in _columns(job)]


def _columns(job: JobConfig) -> list[_Column]:
    url_source = "url" if job.input_format == "txt" else job.url_col  # txt: one unnamed column
    columns = [_Column(url_source, "url", "url_col")]
    if job.caption_col is not None:
        columns.append(_Column(job.caption_col, "caption", "caption_col"))
    if job.clip_col is not None:
        columns.append(_Column(job.clip_col, "clips", "clip_col"))
    columns += [_Column(name, name, "save_additional_columns") for name in job.save_additional_columns]
    names = [column.name for column in columns]
    if len(set(names)) != len(names):
        raise ConfigError(f"output columns would repeat a name: {names}; check save_additional_columns")
    return columns


def read_batches(path: str, job: JobConfig) -> Iterator[pa.RecordBatch]:
    """Stream one url-list file as record batches of :func:`input_columns`, in file order.

    Memory stays bounded by a block of rows (parquet: one row group), except for
    ``json``: a single JSON document (an array of records, or pandas' default
    ``{column: {index: value}}``) is parsed whole. ``txt`` is one url per line,
    blank lines skipped, and has only the ``url`` column (``url_col`` is ignored,
    as in video2dataset; asking for other columns is an error). A missing column, an
    unreadable file or a value that does not fit its column's type raises
    :class:`InputError` naming the file.
    """
    reader = _READERS.get(job.input_format)
    if reader is None:
        raise InputError(f"input_format {job.input_format!r} is not a url list")
    columns = _columns(job)
    schema: pa.Schema | None = None
    try:
        for raw in reader(path, columns):
            batch = _select(path, raw, columns, schema)
            schema = batch.schema
            yield batch
    except InputError:
        raise
    except (OSError, EOFError, ValueError, RecursionError, pa.ArrowException) as error:
        raise InputError(f"cannot read url list {path}: {error}") from error


def _require(path: str, names: Sequence[str], columns: Iterable[_Column]) -> None:
    """Raise InputError if a requested column is not among the file's ``names``."""
    missing = [f"{c.source!r} ({c.option})" for c in columns if c.source not in names]
    if missing:
        raise InputError(
            f"{path} has no column {', '.join(missing)}; its columns are: {', '.join(map(str, names))}"
        )


def _sources(columns: Iterable[_Column]) -> list[str]:
    return list(dict.fromkeys(column.source for column in columns))


def _select(
    path: str, raw: pa.RecordBatch, columns: list[_Column], schema: pa.Schema | None
) -> pa.RecordBatch:
    """Pick, rename and convert the columns; cast to ``schema`` (the first batch's) when given."""
    names = raw.schema.names
    arrays = []
    for column in columns:
        array = raw.column(names.index(column.source)) if column.source in names else pa.nulls(raw.num_rows)
        if _is_string(array.type):
            array = _utf8(array, array.type)
        if column.option == "clip_col":
            array = _clips_array(array)
        elif column.option in _TEXT_OPTIONS:
            array = _text_array(path, array, column)
        elif pa.types.is_null(array.type):
            array = array.cast(pa.string())
        arrays.append(array)
    if schema is None:
        return pa.RecordBatch.from_arrays(arrays, names=[column.name for column in columns])
    arrays = [a if a.type == f.type else a.cast(f.type) for a, f in zip(arrays, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_bytes(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _check_text_type(path: str, column: _Column, kind: pa.DataType) -> None:
    """InputError unless ``kind`` can hold this url (text) or caption (text or a scalar) column."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    text = _is_string(kind) or _is_bytes(kind) or pa.types.is_null(kind)
    if text or (column.option == "caption_col" and not pa.types.is_nested(kind)):
        return
    hint = "urls must be text" if column.option == "url_col" else "captions must be text or numbers"
    raise InputError(
        f"{path}: column {column.source!r} ({column.option}) holds {kind}, not text; {hint} "
        "(check the column name; keep other columns with save_additional_columns)"
    )


def _text_array(path: str, array: pa.Array, column: _Column) -> pa.Array:
    """A url or caption column as valid UTF-8 strings (see :func:`_check_text_type` for what is refused)."""
    _check_text_type(path, column, array.type)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if _is_string(array.type) or _is_bytes(array.type):
        return _utf8(array, pa.string())
    return array.cast(pa.string())


def _utf8(array: pa.Array, kind: pa.DataType) -> pa.Array:
    """String or binary values as ``kind`` strings, invalid UTF-8 replaced by U+FFFD."""
    if _is_string(array.type):
        try:
            array.validate(full=True)
            return array.cast(kind)
        except pa.ArrowInvalid:
            array = array.view(pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary())
    try:
        return array.cast(kind)
    except pa.ArrowInvalid:
        values = array.to_pylist()
        return typed_array([None if v is None else v.decode("utf-8", "replace") for v in values], kind)


# --- clips -------------------------------------------------------------------------------


def _clips_array(array: pa.Array) -> pa.Array:
    return typed_array([clips_json(value) for value in array.to_pylist()], pa.string())


def clips_json(value: Any) -> str | None:
    """A clips cell as JSON text of ``[[start, end], ...]``; None stays None.

    Accepts a list (parquet, json) or its text (csv: JSON or Python repr such as
    ``"[['00:00:01.000', '00:00:02.500']]"``); a single ``[start, end]`` pair becomes
    a list of one. Numbers become floats (seconds), strings (``HH:MM:SS.fff``) stay
    as given. A value of any other shape is kept verbatim, so that sample fails at
    clipping instead of the whole job failing here.
    """
    if value is None:
        return None
    parsed = _parse_text(value) if isinstance(value, str) else value
    pairs = _clip_pairs(parsed)
    if pairs is not None:
        return json.dumps(pairs)
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _parse_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


_BOUND_TYPES = (int, float, str)


def _is_pair(value: Any) -> bool:
    """``[start, end]`` with numbers or strings (bools are not bounds)."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and type(value[0]) in _BOUND_TYPES
        and type(value[1]) in _BOUND_TYPES
    )


def _bound(value: float | str) -> float | str:
    return float(value) if type(value) is int else value


def _clip_pairs(value: Any) -> list[list[float | str]] | None:
    pairs = [value] if _is_pair(value) else value
    if not isinstance(pairs, list | tuple) or not all(_is_pair(pair) for pair in pairs):
        return None
    return [[_bound(start), _bound(end)] for start, end in pairs]


# --- readers: (path, columns) -> raw batches holding at least the requested sources ---------


def _read_txt(path: str, columns: list[_Column]) -> Iterator[pa.RecordBatch]:
    _require(path, ["url"], columns)
    with fsspec.open(path, "rt", encoding="utf-8-sig", errors="replace", compression="infer") as handle:
        urls = (line.strip() for line in handle)
        non_empty = (url for url in urls if url)
        while chunk := list(islice(non_empty, BATCH_ROWS)):
            yield pa.record_batch([typed_array(chunk, pa.string())], names=["url"])


def _read_csv(
    path: str, columns: list[_Column], *, delimiter: str, compression: str = "infer"
) -> Iterator[pa.RecordBatch]:
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    schema = _csv_head_schema(path, parse, compression)
    _require(path, schema.names, columns)
    convert = pcsv.ConvertOptions(
        include_columns=_sources(columns),
        column_types=_csv_types(path, schema, columns),
        strings_can_be_null=True,
        check_utf8=False,  # invalid UTF-8 is replaced in _select, not an error for the whole file
    )
    block, done = BLOCK_BYTES, 0
    while True:
        try:
            for batch in _csv_stream(path, block, parse, convert, compression, skip=done):
                done += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as error:
            # pyarrow's only sign of a row longer than a block is this message.
            if "straddl" not in str(error) or block >= MAX_BLOCK_BYTES:
                raise
            block *= BLOCK_GROWTH


def _csv_stream(
    path: str,
    block: int,
    parse: pcsv.ParseOptions,
    convert: pcsv.ConvertOptions,
    compression: str,
    *,
    skip: int,
) -> Iterator[pa.RecordBatch]:
    """The file's batches read in ``block``-byte blocks, without its first ``skip`` rows."""
    read = pcsv.ReadOptions(block_size=block)
    with fsspec.open(path, "rb", compression=compression) as handle:
        for batch in pcsv.open_csv(handle, read_options=read, parse_options=parse, convert_options=convert):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            yield batch.slice(skip)
            skip = 0


def _csv_head_schema(path: str, parse: pcsv.ParseOptions, compression: str) -> pa.Schema:
    """Column names and types inferred from the first INFER_BYTES of the file (more when its first row
    is longer); text columns are strings even where their bytes are not valid UTF-8."""
    size = INFER_BYTES
    while True:
        with fsspec.open(path, "rb", compression=compression) as handle:
            head = handle.read(size + 1)
        # A cut file ends mid-row: a block size below its length leaves that row unparsed.
        block = len(head) - 1 if len(head) > size else len(head) + 1
        read = pcsv.ReadOptions(block_size=block, use_threads=False)
        convert = pcsv.ConvertOptions(check_utf8=False)
        try:
            return pcsv.open_csv(
                pa.BufferReader(head), read_options=read, parse_options=parse, convert_options=convert
            ).schema
        except pa.ArrowInvalid:
            if len(head) <= size or size >= MAX_BLOCK_BYTES:  # the whole file was read: a real error
                raise
            size *= BLOCK_GROWTH


def _csv_types(path: str, schema: pa.Schema, columns: list[_Column]) -> dict[str, pa.DataType]:
    """The inferred types, but strings for url, caption, clips and all-empty columns."""
    types = {}
    for column in columns:
        kind = schema.field(column.source).type
        if column.option == "url_col":
            _check_text_type(path, column, kind)
        text = column.option in (*_TEXT_OPTIONS, "clip_col") or pa.types.is_null(kind)
        types[column.source] = pa.string() if text else kind
    return types


def _read_parquet(path: str, columns: list[_Column]) -> Iterator[pa.RecordBatch]:
    with fsspec.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        _require(path, parquet.schema_arrow.names, columns)
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, columns=_sources(columns))


def _read_jsonl(path: str, columns: list[_Column]) -> Iterator[pa.RecordBatch]:
    checked = False
    with fsspec.open(path, "rt", encoding="utf-8-sig", errors="replace", compression="infer") as handle:
        rows = (json.loads(line) for line in handle if line.strip())
        while chunk := list(islice(rows, BATCH_ROWS)):
            names, by_column = _json_columns(path, chunk, _sources(columns))
            if not checked:
                _require(path, names, columns)
                checked = True
            yield _json_batch(path, by_column, columns, len(chunk))


def _read_json(path: str, columns: list[_Column]) -> Iterator[pa.RecordBatch]:
    with fsspec.open(path, "rt", encoding="utf-8-sig", errors="replace", compression="infer") as handle:
        data = json.load(handle)
    names, by_column = _json_columns(path, data, _sources(columns))
    _require(path, names, columns)
    rows = max((len(values) for values in by_column.values()), default=0)
    batch = _json_batch(path, by_column, columns, rows)
    yield from pa.Table.from_batches([batch]).to_batches(max_chunksize=BATCH_ROWS)


def _json_columns(path: str, data: Any, wanted: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """All column names, and the ``wanted`` ones' values, from an array of records or
    from pandas' default ``{column: {index: value}}``."""
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        names = list(dict.fromkeys(key for row in data for key in row))
        return names, {name: [row.get(name) for row in data] for name in wanted if name in names}
    if isinstance(data, dict) and all(isinstance(values, dict | list) for values in data.values()):
        by_column = {name: data[name] for name in wanted if name in data}
        return list(data), {
            name: list(values.values()) if isinstance(values, dict) else values
            for name, values in by_column.items()
        }
    raise InputError(f"{path} holds neither JSON records nor an object of columns")


def _json_batch(
    path: str, by_column: dict[str, list[Any]], columns: list[_Column], rows: int
) -> pa.RecordBatch:
    """The requested columns as arrays; url, caption and clips become text first (cells may mix types)."""
    options = {column.source: column.option for column in columns}
    arrays = []
    for source, option in options.items():
        values = by_column.get(source, [None] * rows)
        try:
            arrays.append(_json_array(values, option))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise InputError(f"cannot read url list {path}: column {source!r}: {error}") from error
    return pa.RecordBatch.from_arrays(arrays, names=list(options))


def _json_array(values: list[Any], option: str) -> pa.Array:
    if option == "clip_col":
        return typed_array([clips_json(value) for value in values], pa.string())
    if option in _TEXT_OPTIONS:
        text = [value if value is None or isinstance(value, str) else json.dumps(value) for value in values]
        return typed_array([valid_text(value) if value is not None else None for value in text], pa.string())
    return pa.array([valid_text(value) if isinstance(value, str) else value for value in values])


_READERS: dict[str, Callable[[str, list[_Column]], Iterator[pa.RecordBatch]]] = {
    "txt": _read_txt,
    "csv": partial(_read_csv, delimiter=","),
    "tsv": partial(_read_csv, delimiter="\t"),
    "tsv.gz": partial(_read_csv, delimiter="\t", compression="gzip"),
    "json": _read_json,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}
