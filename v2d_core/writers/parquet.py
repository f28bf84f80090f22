"""``parquet``: one ``{shard}.parquet`` holding every row, with media bytes for the successful ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from v2d_core.sample import Sample, Status
from v2d_core.writers.status import StatusWriter, media


class ParquetShardWriter(StatusWriter):
    """Status columns plus ``txt`` (when captions are saved) and one binary column per extension.

    Rows are written in bounded row groups, so a shard is never held whole in memory.
    Failed samples have null media and ``txt``.
    """

    output_format = "parquet"

    def _schema(self) -> pa.Schema:
        fields = list(super()._schema())
        if self.target.save_caption:
            fields.append(pa.field("txt", pa.string()))
        fields += [pa.field(ext, pa.binary()) for ext in self.target.encode_formats.values()]
        return pa.schema(fields)

    def _row(self, sample: Sample) -> dict[str, Any]:
        row = super()._row(sample)
        if sample.status is not Status.SUCCESS:
            return row
        if self.target.save_caption:
            row["txt"] = sample.caption or ""
        parts = media(sample, self.target.encode_formats).items()
        row.update({ext: part.read_bytes() if isinstance(part, Path) else part for ext, part in parts})
        return row
