"""Arrow arrays built without pyarrow's pandas import: the same arrays as ``pa.array``, and a
download shard (url list to status parquet) that never loads pandas."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from v2d_core.arrow_arrays import typed_array

SAME_AS_PA_ARRAY = [
    (["a", None, "é", ""], pa.string()),
    ([], pa.string()),
    ([None] * 9, pa.string()),
    ([True, None, False, True, True, False, None, True, True, False], pa.bool_()),
    ([1, None, -(2**63), 2**63 - 1], pa.int64()),
    ([1.5, None, math.inf, -0.0], pa.float64()),
    ([1, 2.5], pa.float64()),  # not plainly floats: pa.array converts them
    ([[1], None], pa.list_(pa.int64())),  # other types: pa.array
]


@pytest.mark.parametrize(("values", "kind"), SAME_AS_PA_ARRAY)
def test_typed_arrays_equal_pa_array(values: list[Any], kind: pa.DataType) -> None:
    built = typed_array(values, kind)
    built.validate(full=True)
    assert built.equals(pa.array(values, kind))
    assert built.null_count == values.count(None)


@pytest.mark.parametrize(
    ("values", "kind", "error"),
    [([1, "a"], pa.string(), pa.ArrowTypeError), ([2**63], pa.int64(), OverflowError)],
)
def test_values_of_another_type_fail_as_with_pa_array(
    values: list[Any], kind: pa.DataType, error: type[Exception]
) -> None:
    with pytest.raises(error):
        typed_array(values, kind)


SHARD_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    from v2d_core.config import Config
    from v2d_core.inputs.sharding import plan_shards
    from v2d_core.job import JobConfig
    from v2d_core.shards.process import process_shard

    folder = sys.argv[1]
    with socket.socket() as unused:  # bound once and closed: connections to it are refused
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with open(folder + "/urls.txt", "w") as urls:
        urls.writelines(f"http://127.0.0.1:{port}/video_{i}.mp4\\n" for i in range(3))
    reading = {"retries": 0, "allow_private_networks": True}
    config = Config.from_mapping({"reading": reading, "storage": {"number_sample_per_shard": 2}})
    job = JobConfig(
        url_list=folder + "/urls.txt", output_folder=folder + "/out", tmp_dir=folder + "/tmp", config=config
    )
    for spec in plan_shards(job, folder + "/shards"):
        process_shard(spec, job)
    print(json.dumps("pandas" in sys.modules))
    """
)


def test_a_download_shard_never_imports_pandas(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SHARD_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) is False
    rows = [
        row
        for path in sorted((tmp_path / "out").glob("*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]
    assert [row["status"] for row in rows] == ["failed_to_download"] * 3
    assert [row["error_transient"] for row in rows] == [True] * 3
    assert sorted(row["url"].rsplit("/", 1)[1] for row in rows) == [f"video_{i}.mp4" for i in range(3)]
