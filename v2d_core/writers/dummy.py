"""``dummy``: no data files, only the shard's status parquet."""

from __future__ import annotations

from v2d_core.writers.status import StatusWriter


class DummyWriter(StatusWriter):
    """Writes the status parquet and nothing else (video2dataset's dummy writes nothing at all)."""

    output_format = "dummy"
