"""Hostile inputs: every class ends as a clear error before work starts (url-list problems) or as a
failed row with the reason (media problems); never a crashed shard, a lost row or a file outside
the output folder."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tfrecord.reader import tfrecord_loader

from tests.helpers import stats, status_rows
from tests.hostile_media import hostile_media, write_hostile_tar
from v2d_core import video2dataset
from v2d_core.errors import InputError
from v2d_core.testing.server import MediaServer

FAST = {"processes_count": 1, "thread_count": 4, "show_progress": False, "timeout": 10, "retries": 0}
RESIZE = {"subsampling": {"ResolutionSubsampler": {"args": {"video_size": 64, "resize_mode": "scale"}}}}
REPLACED = "\ufffd"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hostile_media(tmp_path_factory.mktemp("hostile_media"))


@pytest.fixture(scope="module")
def server(media: dict[str, Path]) -> Iterator[MediaServer]:
    with MediaServer(media["good"].parent) as running:
        yield running


def rows_by_url(output: Path) -> dict[str, dict[str, Any]]:
    """Status rows keyed by the last part of their url (rows are written in the order fetches end)."""
    return {(row["url"] or "").rsplit("/", 1)[-1]: row for row in status_rows(output)}


def data_members(output: Path, output_format: str, shard: str) -> dict[str, dict[str, bytes]]:
    """The successful samples a shard's data files hold: key -> extension -> bytes."""
    found: dict[str, dict[str, bytes]] = {}
    if output_format == "files":
        for path in (output / shard).iterdir():
            key, _, ext = path.name.partition(".")
            found.setdefault(key, {})[ext] = path.read_bytes()
    elif output_format == "webdataset":
        with tarfile.open(output / f"{shard}.tar") as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                found.setdefault(key, {})[ext] = tar.extractfile(member).read()  # type: ignore[union-attr]
    elif output_format == "parquet":
        for row in pq.read_table(output / f"{shard}.parquet").to_pylist():
            if row["status"] == "success":
                found[row["key"]] = {"mp4": row["mp4"], "txt": row["txt"].encode()}
    else:
        loader = tfrecord_loader(
            str(output / f"{shard}.tfrecord"), None, dict.fromkeys(("key", "mp4", "txt", "json"), "byte")
        )
        for example in loader:
            members = {ext: bytes(value) for ext, value in example.items()}
            found[members.pop("key").decode()] = members
    return found


# --- a tar to re-process whose member names attack the filesystem ---------------------------------

ESCAPE = f"/tmp/v2d-hostile-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def hostile_tar(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]) -> Path:
    """A folder holding ``00007.tar``, whose samples are listed below in tar order."""
    folder = tmp_path_factory.mktemp("hostile_tar")
    write_hostile_tar(folder / "00007.tar", media["good"].read_bytes(), ESCAPE)
    return folder


TAR_SUCCESSES = {  # key: caption (None: the sample has neither a txt member nor a caption in its json)
    "00007000": "fine caption",
    "00007002": None,
    "00007005": None,
    "00007006": "5",
    "00007007": f"caf{REPLACED} {REPLACED}\nsecond line\r\nthird",
}
TAR_FAILURES = [
    ("../../escape", "unsafe sample key"),
    (ESCAPE, "unsafe sample key"),
    ("sub/dir/00007001", "unsafe sample key"),
    ("", "unsafe sample key"),
    ("a" * 300, "300 characters"),
    ("00007003", "link or device"),
    ("00007004", "link or device"),
    (f"{REPLACED}{REPLACED}01", "unsafe sample key"),
    ("00007005", "comes back"),
    ("00007008", "unreadable json member"),
]


def _tree(root: Path) -> set[Path]:
    return {Path(folder) / name for folder, dirs, files in os.walk(root) for name in dirs + files}


@pytest.mark.parametrize("output_format", ["files", "webdataset", "parquet", "tfrecord"])
def test_tar_member_names_never_write_outside_the_output_folder(
    tmp_path: Path, hostile_tar: Path, media: dict[str, Path], output_format: str
) -> None:
    output, work = tmp_path / "a" / "b" / "out", tmp_path / "a" / "b" / "work"
    before = _tree(tmp_path)
    video2dataset(
        url_list=str(hostile_tar),
        input_format="webdataset",
        stage="subset",
        output_folder=str(output),
        output_format=output_format,
        tmp_dir=str(work),
        **FAST,
    )
    created = _tree(tmp_path) - before
    # only the output's files and the folders above it, and the work folder left empty
    outside = {p for p in created if output not in p.parents and p not in (output, *output.parents, work)}
    assert not outside
    for escaped in (tmp_path / "a" / "escape.mp4", tmp_path / "escape.mp4", tmp_path.parent / "escape.mp4"):
        assert not escaped.exists()
    assert not Path(f"{ESCAPE}.mp4").exists() and not Path(ESCAPE).exists()

    rows = status_rows(output)
    assert len(rows) == len(TAR_SUCCESSES) + len(TAR_FAILURES)  # one row per sample, the folder is none
    failed = [(row["key"], row["error_message"]) for row in rows if row["status"] != "success"]
    assert [key for key, _ in failed] == [key for key, _ in TAR_FAILURES]
    for (_, message), (_, reason) in zip(failed, TAR_FAILURES, strict=True):
        assert reason in message
    assert {row["key"]: row["caption"] for row in rows if row["status"] == "success"} == TAR_SUCCESSES
    assert stats(output)["00007"]["count"] == len(rows)

    members = data_members(output, output_format, "00007")
    assert set(members) == set(TAR_SUCCESSES)
    assert {key: parts["txt"].decode("utf-8") for key, parts in members.items()} == {
        key: caption or "" for key, caption in TAR_SUCCESSES.items()
    }
    assert all(parts["mp4"] == media["good"].read_bytes() for parts in members.values())
    if output_format != "parquet":
        record = json.loads(members["00007007"]["json"])
        assert record["url"] == f"http://example.com/{REPLACED}" and record["fps"] == 25


# --- media: bombs, no frames, no video, corrupt headers ------------------------------------------

DOWNLOAD_OUTCOMES = {
    # name: (status with the default {"video": "mp4"}, reason) -- with a resize, "lying" fails in ffmpeg
    "good": ("success", None),
    "one_frame": ("success", None),
    "zero_declared": ("success", None),
    "audio_only": ("failed_to_download", "no video stream"),
    "audio_in_mp4": ("failed_to_download", "no video stream"),
    "cover_art": ("failed_to_download", "no video stream"),
    "zero_duration": ("failed_to_download", "no frames (zero duration)"),
    "header_cut": ("failed_to_download", "no video or audio stream"),
    "garbage": ("failed_to_download", "not readable media"),
    "bomb": ("failed_to_download", "16000x16000 (256000000 pixels), over max_pixels (67108864)"),
    "declared_20000": ("failed_to_download", "frame size unknown"),
    "lying": ("failed_to_subsample", "transcoding"),  # its later frames are refused by ffmpeg's max_pixels
}


def _url_list(folder: Path, server: MediaServer, media: dict[str, Path], names: list[str]) -> Path:
    path = folder / "urls.txt"
    path.write_text("".join(server.url("files", media[name].name) + "\n" for name in names))
    return path


def test_bad_media_are_failed_rows_with_the_reason(
    tmp_path: Path, media: dict[str, Path], server: MediaServer
) -> None:
    output = tmp_path / "out"
    urls = _url_list(tmp_path, server, media, list(DOWNLOAD_OUTCOMES))
    video2dataset(url_list=str(urls), input_format="txt", output_folder=str(output), config=RESIZE, **FAST)
    rows = rows_by_url(output)
    assert len(rows) == len(DOWNLOAD_OUTCOMES)
    for name, (status, reason) in DOWNLOAD_OUTCOMES.items():
        row = rows[media[name].name]
        assert row["status"] == status, (name, row["error_message"])
        assert reason is None or reason in row["error_message"], (name, row["error_message"])


AUDIO_OUTCOMES = {
    "good": "success",  # its audio track, extracted
    "audio_only": "success",
    "audio_in_mp4": "success",
    "cover_art": "success",
    "one_frame": "failed_to_download",  # a video without audio
    "zero_duration": "failed_to_download",
    "garbage": "failed_to_download",
    "bomb": "failed_to_download",
}


@pytest.mark.parametrize("encode_formats", [{"audio": "m4a"}, {"video": "mp4", "audio": "mp3"}])
def test_audio_only_files_with_audio_encode_formats(
    tmp_path: Path, media: dict[str, Path], server: MediaServer, encode_formats: dict[str, str]
) -> None:
    output = tmp_path / "out"
    urls = _url_list(tmp_path, server, media, list(AUDIO_OUTCOMES))
    video2dataset(
        url_list=str(urls),
        input_format="txt",
        output_folder=str(output),
        encode_formats=encode_formats,
        **FAST,
    )
    rows = rows_by_url(output)
    expected = dict(AUDIO_OUTCOMES, one_frame="success") if "video" in encode_formats else AUDIO_OUTCOMES
    assert {name: rows[media[name].name]["status"] for name in AUDIO_OUTCOMES} == expected
    members = data_members(output, "files", "00000")
    audio_key = rows[media["audio_only"].name]["key"]
    assert set(members[audio_key]) == {encode_formats["audio"], "json"}  # never an mp4 holding only sound


def test_bad_members_of_a_tar_are_failed_rows_in_a_stage_without_transforms(
    tmp_path: Path, media: dict[str, Path]
) -> None:
    names = ["good", "zero_duration", "audio_in_mp4", "header_cut", "garbage", "bomb", "declared_20000"]
    source = tmp_path / "in"
    source.mkdir()
    with tarfile.open(source / "00002.tar", "w") as tar:
        for index, name in enumerate(names):
            tar.add(media[name], arcname=f"0000200{index}.mp4")
    output = tmp_path / "out"
    video2dataset(
        url_list=str(source), input_format="webdataset", stage="subset", output_folder=str(output), **FAST
    )
    rows = {row["key"]: row for row in status_rows(output)}
    outcome = {name: rows[f"0000200{index}"] for index, name in enumerate(names)}
    assert outcome["good"]["status"] == "success"
    for name, reason in [
        ("zero_duration", "no frames (zero duration)"),
        ("audio_in_mp4", "no video stream"),
        ("header_cut", "no video stream"),
        ("garbage", "not readable media"),
        ("bomb", "over max_pixels"),
        ("declared_20000", "frame size unknown"),
    ]:
        assert (
            outcome[name]["status"] == "failed_to_subsample" and reason in outcome[name]["error_message"]
        ), name


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from v2d_core.config import Config
    from v2d_core.inputs.sharding import tar_shards
    from v2d_core.job import JobConfig
    from v2d_core.shards.process import process_shard
    from v2d_core.inputs.sharding import plan_shards

    urls, tars, out = sys.argv[1:4]
    config = Config.from_mapping(json.loads(sys.argv[4]))
    download = JobConfig(url_list=urls, output_folder=out + "/download", tmp_dir=out + "/tmp", config=config)
    for spec in plan_shards(download, out + "/shards"):
        process_shard(spec, download)
    subset = JobConfig(
        url_list=tars, input_format="webdataset", stage="subset", output_folder=out + "/subset",
        tmp_dir=out + "/tmp", config=config,
    )
    for spec in tar_shards(tars):
        process_shard(spec, subset)
    # This process's own peak: VmHWM starts again at exec, while ru_maxrss would start from the
    # size of the process that spawned it (pytest, hundreds of MB late in a full run).
    status = open("/proc/self/status").read()
    own = int(status.split("VmHWM:")[1].split()[0]) // 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    print(json.dumps({"self": own, "children": children}))
    """
)


def test_decompression_bombs_are_refused_before_decoding_and_memory_stays_bounded(
    tmp_path: Path, media: dict[str, Path], server: MediaServer
) -> None:
    """A 4 MB file that decodes to 16000x16000 frames (~400 MB each in ffmpeg), one whose header says
    16x16 but whose later frames are 12000x12000, and one declaring 20000x20000: refused by the
    header check or by ffmpeg's own max_pixels, so no process ever holds such a frame."""
    names = ["good", "bomb", "lying", "declared_20000"]
    urls = _url_list(tmp_path, server, media, names)
    tars = tmp_path / "tars"
    tars.mkdir()
    with tarfile.open(tars / "00003.tar", "w") as tar:
        for index, name in enumerate(names):
            tar.add(media[name], arcname=f"0000300{index}.mp4")
    config = dict(RESIZE, reading={"timeout": 30, "retries": 0})
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            MEMORY_SCRIPT,
            str(urls),
            str(tars),
            str(tmp_path / "out"),
            json.dumps(config),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    peak_mb = json.loads(done.stdout.strip().splitlines()[-1])
    download = rows_by_url(tmp_path / "out" / "download")
    subset = {row["key"]: row for row in status_rows(tmp_path / "out" / "subset")}
    for index, name in enumerate(names):
        assert (download[media[name].name]["status"] == "success") == (name == "good"), name
        assert (subset[f"0000300{index}"]["status"] == "success") == (name == "good"), name
    assert "over max_pixels" in download[media["bomb"].name]["error_message"]
    assert "over max_pixels" in subset["00003001"]["error_message"]
    # A child's peak counts its size when forked (the parent's, ~200 MB); an ffmpeg decoding one of
    # these frames peaks ~250 MB above it (measured: 458 MB with max_pixels raised to 2e9).
    assert peak_mb["children"] < peak_mb["self"] + 100, peak_mb
    assert peak_mb["self"] < 500, peak_mb  # PyAV only reads headers in this process


def test_max_pixels_is_an_option(tmp_path: Path, media: dict[str, Path], server: MediaServer) -> None:
    output = tmp_path / "out"
    urls = _url_list(tmp_path, server, media, ["good"])
    video2dataset(
        url_list=str(urls), input_format="txt", output_folder=str(output), max_pixels=100 * 100, **FAST
    )
    (row,) = status_rows(output)
    assert row["status"] == "failed_to_download"
    assert "video is 160x120 (19200 pixels), over max_pixels (10000)" in row["error_message"]


# --- captions: 10 MB, newlines, invalid UTF-8, in every text input --------------------------------

BIG = "big caption " + "x" * (10 * 1024 * 1024) + " end"
CAPTIONS = [  # (bytes in the file, caption expected in every output)
    (BIG.encode(), BIG),  # first: no whole data row in the head that csv types are inferred from
    (b"plain", "plain"),
    (b"first line\nsecond line\r\nthird\tline", "first line\nsecond line\r\nthird\tline"),
    (b"caf\xe9 \xff\xfe bytes", f"caf{REPLACED} {REPLACED}{REPLACED} bytes"),
]


def _write_captions(path: Path, input_format: str, url: str) -> None:
    if input_format in ("csv", "tsv"):
        delimiter = "," if input_format == "csv" else "\t"
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        writer.writerow(["url", "caption"])
        writer.writerows([url, data.decode("latin-1")] for data, _ in CAPTIONS)
        path.write_bytes(buffer.getvalue().encode("latin-1"))
    else:  # parquet: text the file declares as utf8 but whose bytes are not, as careless writers leave it
        captions = pa.array([data for data, _ in CAPTIONS], pa.binary()).view(pa.string())
        pq.write_table(pa.table({"url": [url] * len(CAPTIONS), "caption": captions}), path)


@pytest.mark.parametrize(
    ("input_format", "output_format"),
    [("csv", "files"), ("tsv", "webdataset"), ("parquet", "parquet")],
)
def test_captions_long_multiline_or_not_utf8_survive_into_every_output(
    tmp_path: Path, media: dict[str, Path], server: MediaServer, input_format: str, output_format: str
) -> None:
    url_list = tmp_path / f"captions.{input_format}"
    _write_captions(url_list, input_format, server.url("files", media["good"].name))
    output = tmp_path / "out"
    video2dataset(
        url_list=str(url_list),
        input_format=input_format,
        caption_col="caption",
        output_folder=str(output),
        output_format=output_format,
        **FAST,
    )
    expected = {f"0000000{i}": caption for i, (_, caption) in enumerate(CAPTIONS)}
    rows = status_rows(output)
    assert {row["key"]: row["caption"] for row in rows} == expected
    assert all(row["status"] == "success" for row in rows)
    members = data_members(output, output_format, "00000")
    assert {key: parts["txt"].decode("utf-8") for key, parts in members.items()} == expected
    if output_format != "parquet":
        assert {key: json.loads(parts["json"])["caption"] for key, parts in members.items()} == expected


# --- url lists: a million rows, wrong columns, wrong types ----------------------------------------

SHARDING_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from v2d_core.config import Config, StorageConfig
    from v2d_core.job import JobConfig
    from v2d_core.inputs.sharding import plan_shards

    config = Config(storage=StorageConfig(number_sample_per_shard=10000))
    job = JobConfig(url_list=sys.argv[1], input_format="csv", caption_col="caption", config=config)
    rows = sum(spec.row_count for spec in plan_shards(job, sys.argv[2]))
    print(json.dumps({"rows": rows, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
    """
)


def _shard_peak(url_list: Path, shard_dir: Path) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", SHARDING_SCRIPT, str(url_list), str(shard_dir)],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    return json.loads(done.stdout)


def test_sharding_a_million_rows_keeps_memory_flat(tmp_path: Path) -> None:
    body = "".join(f"https://example.com/v/{i:06d}.mp4,caption of video {i}\n" for i in range(100_000))
    small, large = tmp_path / "100k.csv", tmp_path / "1m.csv"
    small.write_text("url,caption\n" + body)
    with large.open("w") as handle:
        handle.write("url,caption\n")
        handle.writelines([body] * 10)  # urls repeat: sharding does not care
    small_run = _shard_peak(small, tmp_path / "small")
    large_run = _shard_peak(large, tmp_path / "large")
    assert (small_run["rows"], large_run["rows"]) == (100_000, 1_000_000)
    assert len(list((tmp_path / "large").glob("*.arrow"))) == 100
    assert large_run["peak_kb"] < 1.25 * small_run["peak_kb"], (small_run, large_run)


def _no_work_done(output: Path) -> bool:
    return not list(output.glob("[0-9]*")) and not (output / "_tmp").exists()


@pytest.mark.parametrize(
    ("table", "options", "message"),
    [
        ({"link": ["http://a/x.mp4"]}, {}, r"has no column 'url' \(url_col\); its columns are: link"),
        ({"url": [1, 2]}, {}, r"column 'url' \(url_col\) holds int64, not text"),
        (
            {"id": [1.5], "url": ["http://a/x.mp4"]},
            {"url_col": "id"},
            r"column 'id' \(url_col\) holds double",
        ),
        (
            {"url": ["http://a/x.mp4"], "caption": [["a", "b"]]},
            {"caption_col": "caption"},
            r"column 'caption' \(caption_col\) holds list<\w+: string>, not text",
        ),
        (
            {"url": [["http://a/x.mp4"]]},
            {},
            r"column 'url' \(url_col\) holds list<\w+: string>, not text",
        ),
    ],
)
def test_wrong_column_or_type_in_parquet_is_an_error_before_any_work(
    tmp_path: Path, table: dict[str, list[Any]], options: dict[str, str], message: str
) -> None:
    url_list = tmp_path / "urls.parquet"
    pq.write_table(pa.table(table), url_list)
    output = tmp_path / "out"
    with pytest.raises(InputError, match=message):
        video2dataset(
            url_list=str(url_list), input_format="parquet", output_folder=str(output), **options, **FAST
        )
    assert _no_work_done(output)


def test_numbers_as_urls_in_csv_is_an_error_before_any_work(tmp_path: Path) -> None:
    first = tmp_path / "lists" / "a.csv"
    first.parent.mkdir()
    first.write_text("url,id\nhttp://a/x.mp4,1\n")
    (tmp_path / "lists" / "b.csv").write_text("url,id\n1,2\n3,4\n")  # the second file of a folder
    output = tmp_path / "out"
    with pytest.raises(InputError, match=r"b\.csv: column 'url' \(url_col\) holds int64, not text"):
        video2dataset(url_list=str(first.parent), input_format="csv", output_folder=str(output), **FAST)
    assert _no_work_done(output)


def test_a_single_bad_value_is_a_failed_row(
    tmp_path: Path, media: dict[str, Path], server: MediaServer
) -> None:
    good = server.url("files", media["good"].name)
    rows = [
        {"url": good, "caption": "good"},
        {"url": None, "caption": "null url"},
        {"url": 42, "caption": "number url"},
        {"url": [good], "caption": "list url"},
        {"caption": "missing url"},
        {"url": "not a url", "caption": "text url"},
        {"url": good, "caption": ["a", "list"]},
        {"url": good, "caption": {"a": "mapping"}},
        {"url": good, "caption": None},
    ]
    url_list = tmp_path / "urls.jsonl"
    url_list.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "out"
    video2dataset(
        url_list=str(url_list), input_format="jsonl", caption_col="caption", output_folder=str(output), **FAST
    )
    found = {row["key"]: row for row in status_rows(output)}
    assert len(found) == len(rows)
    outcome = [(found[f"0000000{i}"]["status"], found[f"0000000{i}"]["caption"]) for i in range(len(rows))]
    assert outcome == [
        ("success", "good"),
        ("failed_to_download", "null url"),
        ("failed_to_download", "number url"),
        ("failed_to_download", "list url"),
        ("failed_to_download", "missing url"),
        ("failed_to_download", "text url"),
        ("success", '["a", "list"]'),
        ("success", '{"a": "mapping"}'),
        ("success", None),
    ]
    assert found["00000001"]["error_message"] == "no url to fetch (got None)"
    assert "unsupported url '42'" in found["00000002"]["error_message"]
