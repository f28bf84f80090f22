"""Arrow arrays from Python values without pyarrow's pandas import.

``pa.array`` on a Python list imports pandas the first time it runs in a process (pyarrow asks
whether the list is a pandas object): ~0.2 CPU-s in the command that reads a url list, and again
in every worker that writes a parquet row. :func:`typed_array` builds strings, booleans, 64-bit
integers and doubles from their buffers instead; any other type, or values that are not plainly
of the type, go to ``pa.array`` as before (and fail there with its message).
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

INT64_RANGE = range(-(2**63), 2**63)


def typed_array(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """``values`` (None for null) as an array of ``kind``."""
    if pa.types.is_string(kind) and all(value is None or type(value) is str for value in values):
        try:
            return _strings(values)
        except (UnicodeEncodeError, OverflowError):  # lone surrogates, over 2 GiB: pa.array decides
            pass
    elif pa.types.is_boolean(kind) and all(value is None or type(value) is bool for value in values):
        return _booleans(values)
    elif pa.types.is_int64(kind) and all(value is None or _is_int64(value) for value in values):
        return _fixed(kind, "q", values, 0)
    elif pa.types.is_float64(kind) and all(value is None or type(value) is float for value in values):
        return _fixed(kind, "d", values, 0.0)
    return pa.array(values, kind)


def _is_int64(value: Any) -> bool:
    return type(value) is int and value in INT64_RANGE


def _bitmap(flags: Sequence[bool]) -> pa.Buffer:
    """Arrow's bit-packed booleans, least significant bit first."""
    packed = bytearray((len(flags) + 7) // 8)
    for index, flag in enumerate(flags):
        if flag:
            packed[index >> 3] |= 1 << (index & 7)
    return pa.py_buffer(packed)


def _validity(values: Sequence[Any]) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap of ``values`` (None when none is null) and their null count."""
    valid = [value is not None for value in values]
    nulls = len(valid) - sum(valid)
    return (_bitmap(valid) if nulls else None), nulls


def _strings(values: Sequence[str | None]) -> pa.Array:
    data = [b"" if value is None else value.encode("utf-8") for value in values]
    offsets = array.array("i", [0, *itertools.accumulate(map(len, data))])  # OverflowError past 2 GiB
    validity, nulls = _validity(values)
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    return pa.Array.from_buffers(pa.string(), len(values), buffers, null_count=nulls)


def _booleans(values: Sequence[bool | None]) -> pa.Array:
    validity, nulls = _validity(values)
    buffers = [validity, _bitmap([bool(value) for value in values])]
    return pa.Array.from_buffers(pa.bool_(), len(values), buffers, null_count=nulls)


def _fixed(kind: pa.DataType, code: str, values: Sequence[Any], zero: float) -> pa.Array:
    data = array.array(code, [zero if value is None else value for value in values])
    validity, nulls = _validity(values)
    return pa.Array.from_buffers(kind, len(values), [validity, pa.py_buffer(data)], null_count=nulls)
