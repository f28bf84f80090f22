"""Never worse, never silent: a re-run keeps a good shard rather than replace it by a worse one,
Dagster alone retries a shard, and the quality checks block."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, events, materialize_plan, write_dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.factory import build_definitions

FORCE = {"ops": {"clips__download": {"config": {"force": True}}}}


@pytest.fixture
def media_copy(tmp_path: Path, media_dir: Path) -> Path:
    """A copy of the test videos this test may delete from."""
    return Path(shutil.copytree(media_dir, tmp_path / "media"))


@pytest.fixture
def own_server(media_copy: Path) -> Iterator[MediaServer]:
    with MediaServer(media_copy) as server:
        yield server


def shard_files(folder: Path, name: str) -> dict[str, bytes]:
    paths = [*folder.glob(f"{name}*"), *folder.glob(f"{name}/*")]
    return {str(path.relative_to(folder)): path.read_bytes() for path in paths if path.is_file()}


def test_a_worse_shard_is_kept_out_and_the_run_fails_naming_both_rates(
    tmp_path: Path, media_copy: Path, own_server: MediaServer
) -> None:
    datasets = write_dataset(tmp_path / "datasets", own_server, max_retries=2)  # min_success_rate 0.5
    defs = build_definitions(str(datasets))
    output = datasets / "out" / "download"
    urls = [own_server.url("files", f"video_000{i}.mp4") for i in (2, 3)]  # shard 00001's rows
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_plan(defs, instance)
        good = dg.materialize(
            list(defs.assets), selection=[DOWNLOAD], partition_key="00001", instance=instance
        )
        assert good.success
        before = shard_files(output, "00001")
        for url in urls:
            (media_copy / url.rsplit("/", 1)[-1]).unlink()  # the server now answers 404

        worse = dg.materialize(
            list(defs.assets),
            selection=[DOWNLOAD],
            partition_key="00001",
            instance=instance,
            raise_on_error=False,
        )
        assert not worse.success
        kinds = [event.event_type_value for event in worse.all_events]
        # Dagster owns retries (max_retries=2): 3 attempts, each fetching every row of the shard once
        assert kinds.count("STEP_UP_FOR_RETRY") == 2 and kinds.count("STEP_FAILURE") == 1
        assert [own_server.hits(url) for url in urls] == [1 + 3, 1 + 3]
        (failure,) = events(worse, "STEP_FAILURE")
        message = failure.user_failure_data.description
        assert "00001" in message and "0.0% (0/2)" in message and "100.0% (2/2)" in message
        assert "ASSET_MATERIALIZATION" not in kinds
        assert shard_files(output, "00001") == before  # byte for byte: the good shard stays

        forced = dg.materialize(
            list(defs.assets),
            selection=[DOWNLOAD],
            partition_key="00001",
            instance=instance,
            run_config=FORCE,
            raise_on_error=False,
        )
    # on purpose: replaced, and the blocking success_rate check fails the run (the graph shows it)
    assert stats(output)["00001"]["successes"] == 0
    assert [e.materialization.partition for e in events(forced, "ASSET_MATERIALIZATION")] == ["00001"]
    verdicts = {c.check_name: c.passed for c in events(forced, "ASSET_CHECK_EVALUATION")}
    assert verdicts["success_rate"] is False and verdicts["readable"] is True
    (failure,) = events(forced, "STEP_FAILURE")
    assert "blocking asset check" in failure.error.message
