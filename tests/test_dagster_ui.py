"""The Dagster UI in a real browser: Playwright drives Debian's chromium, headless, against
``dagster dev`` on 127.0.0.1. A person's paths: open the dataset's download asset, launch one
partition from the Materialize dialog, watch the run succeed, find the shard's metadata; and
launch a backfill of the whole stage, watch it finish, see a shard's blocking check fail.

Needs the ``playwright`` package (pip) and a chromium binary (``apt-get install chromium``);
Playwright's own browser download is never used. Skips, saying which is missing, without them.
Screenshots of the run and the partition are left in the test's tmp folder.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import stats
from tests.test_dagster import DOWNLOAD, REPO, write_dataset
from v2d_core.testing.server import MediaServer
from v2d_dagster.testing import LocalDagster, plan_dataset

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser test needs Playwright: pip install playwright"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECONDS = 1000  # Playwright counts milliseconds


@contextlib.contextmanager
def chromium_page(profile: Path) -> Iterator[sync_api.Page]:
    """A page of a fresh headless chromium profile (its ``--user-data-dir`` is ``profile``).

    Start it after any in-process Dagster run: Playwright's sync API keeps its event loop
    marked running in this thread, and Dagster's in-process executor cannot then clean up its own.
    """
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(30 * SECONDS)
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.mark.timeout(300)
def test_launch_one_partition_from_the_ui_and_see_it_succeed(
    tmp_path: Path, media_server: MediaServer
) -> None:
    if CHROMIUM is None:
        pytest.skip("the browser test needs chromium on PATH: apt-get install -y chromium")
    datasets = write_dataset(tmp_path / "datasets", media_server)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    assert plan_dataset(home, datasets, "clips") == ["00000", "00001", "00002"]
    expect = sync_api.expect

    with LocalDagster(home, datasets) as dagster, chromium_page(tmp_path / "chromium-profile") as page:
        dagster.graphql("mutation { setNuxSeen }")  # no "join the community" dialog over the page
        page.goto(f"{dagster.url}/assets/clips/download")
        expect(page).to_have_title(re.compile("clips / download"))

        page.get_by_role("button", name="Materialize").first.click()
        dialog = page.get_by_role("dialog").first
        expect(dialog).to_contain_text("Launch runs to materialize clips / download")
        dialog.get_by_text("Select a partition or create one").click()
        menu = page.get_by_role("menu").first
        menu.get_by_placeholder("Filter partitions").fill("00001")
        menu.get_by_role("menuitem", name="00001").click()
        page.keyboard.press("Escape")  # close the partition menu, keep the dialog
        expect(dialog).to_contain_text("1 partition")
        dialog.get_by_role("button", name="Launch 1 run").click()

        expect(page.get_by_text("Launched run")).to_be_visible(timeout=60 * SECONDS)  # a loaded machine
        page.get_by_role("button", name="View").or_(page.get_by_role("link", name="View")).first.click()
        expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
        run_id = page.url.rsplit("/", 1)[-1]
        dagster.wait_until("the run to finish", lambda: dagster.run_status(run_id) in FINISHED, timeout=180)
        assert dagster.run_status(run_id) == "SUCCESS", dagster.log_path.read_text()[-3000:]

        # the run page turns green by itself, and names the partition
        expect(page.get_by_text("Success").first).to_be_visible(timeout=60 * SECONDS)
        expect(page.get_by_text("partition: 00001")).to_be_visible()
        page.screenshot(path=str(tmp_path / "run.png"))

        page.goto(f"{dagster.url}/assets/clips/download?view=partitions")
        expect(page.get_by_text("Materialized (1)")).to_be_visible()
        page.get_by_text("00001", exact=True).first.click()
        expect(page.get_by_text("videos_per_second")).to_be_visible()
        page.screenshot(path=str(tmp_path / "partition.png"))
        assert dagster.materialized_partitions(DOWNLOAD.path) == {"00001"}
    assert list(stats(datasets / "out" / "download")) == ["00001"]


FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@pytest.mark.timeout(300)
def test_partitions_page_of_a_10000_shard_stage(tmp_path: Path, media_server: MediaServer) -> None:
    if CHROMIUM is None:
        pytest.skip("the browser test needs chromium on PATH: apt-get install -y chromium")
    datasets = write_dataset(tmp_path / "datasets", media_server)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:  # 10,000 shard ids, as a plan registers them
        instance.add_dynamic_partitions("clips_shards", [f"{i:05d}" for i in range(10_000)])
    expect = sync_api.expect

    with LocalDagster(home, datasets) as dagster, chromium_page(tmp_path / "chromium-profile") as page:
        dagster.graphql("mutation { setNuxSeen }")
        page.goto(f"{dagster.url}/assets/clips/download?view=partitions")
        expect(page.get_by_text(re.compile(r"Missing \(10,?000\)")).first).to_be_visible()
        expect(page.get_by_text("Failed (0)")).to_be_visible()  # the status filter a user narrows to
        page.get_by_placeholder(re.compile("Filter by name")).fill("09999")
        expect(page.get_by_text("09999", exact=True).first).to_be_visible()
        expect(page.get_by_text("00000", exact=True)).to_have_count(0)
        page.screenshot(path=str(tmp_path / "partitions_10k.png"))


def backfill_ids(home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [backfill.backfill_id for backfill in instance.get_backfills()]


@pytest.mark.timeout(420)
def test_backfill_a_whole_stage_from_the_ui_and_see_a_blocking_check_fail(
    tmp_path: Path, media_server: MediaServer
) -> None:
    if CHROMIUM is None:
        pytest.skip("the browser test needs chromium on PATH: apt-get install -y chromium")
    datasets = write_dataset(tmp_path / "datasets", media_server)  # 00002 is one 404: 0% < 50%
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    partitions = plan_dataset(home, datasets, "clips")
    expect = sync_api.expect

    with LocalDagster(home, datasets) as dagster, chromium_page(tmp_path / "chromium-profile") as page:
        dagster.graphql("mutation { setNuxSeen }")
        page.goto(f"{dagster.url}/assets/clips/download")
        page.get_by_role("button", name="Materialize").first.click()
        dialog = page.get_by_role("dialog").first
        expect(dialog).to_contain_text("Launch runs to materialize clips / download")
        dialog.get_by_role("button", name="All", exact=True).click()  # every shard of the stage
        expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible()
        page.screenshot(path=str(tmp_path / "dialog.png"))
        dialog.get_by_role("button", name="Launch backfill").click()

        expect(page.get_by_text(re.compile("backfill", re.IGNORECASE)).first).to_be_visible()
        dagster.wait_until("the backfill to be created", lambda: bool(backfill_ids(home)), timeout=60)
        (backfill_id,) = backfill_ids(home)
        page.goto(f"{dagster.url}/runs/b/{backfill_id}")  # the backfill's own page, watched to the end
        assert dagster.wait_for_backfill(backfill_id, timeout=300) == "COMPLETED_SUCCESS"
        page.reload()
        expect(page.get_by_text("100% completed")).to_be_visible(timeout=60 * SECONDS)
        page.screenshot(path=str(tmp_path / "backfill.png"))
        assert dagster.materialized_partitions(DOWNLOAD.path) == set(partitions)
        # every shard is written, but shard 00002's blocking success_rate check failed its run
        with dg.DagsterInstance.from_config(str(home)) as instance:
            (run,) = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert run.status == dg.DagsterRunStatus.FAILURE

        page.goto(f"{dagster.url}/assets/clips/download?view=checks")
        page.get_by_text("success_rate").first.click()
        page.screenshot(path=str(tmp_path / "checks.png"))
        expect(page.get_by_text("blocking", exact=True)).to_be_visible()  # "This is a blocking asset check"
        expect(
            page.get_by_text("Failed", exact=True).first
        ).to_be_visible()  # success_rate's state in the list
