"""``process_shard``: the one unit of work. Fetch every row, transform, write, account for all."""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from queue import SimpleQueue

import pyarrow as pa

from v2d_core.errors import describe, is_transient, raise_if_disk_full, status_for
from v2d_core.fetch import FetchResult, check_url, make_fetcher
from v2d_core.fetch.base import Fetcher
from v2d_core.fetch.host_queue import HostQueue
from v2d_core.fetch.webdataset import read_tar_samples
from v2d_core.inputs.sharding import ShardSpec, read_shard_input
from v2d_core.job import JobConfig
from v2d_core.sample import Sample, Status
from v2d_core.shards.commit import recover
from v2d_core.shards.result import ShardResult
from v2d_core.shards.work_folders import clear_work_folders, job_work_prefix
from v2d_core.subsamplers.base import Subsampler
from v2d_core.subsamplers.chain import apply_subsamplers, build_subsamplers, output_encode_formats
from v2d_core.writers import ShardTarget, ShardWriter, make_writer

SampleCallback = Callable[[Sample, int], None]
FetchOutcome = FetchResult | BaseException
SourceItem = tuple[Sample, FetchOutcome, Path]
# tmp folder -> the input schema of a shard and its samples with their media
Source = Callable[[str], tuple[pa.Schema, Iterator[SourceItem]]]
# (writer, tmp folder) -> None: writes the samples kept from an earlier version of the shard
Keeper = Callable[[ShardWriter, str], None]


def process_shard(shard: ShardSpec, job: JobConfig, on_sample: SampleCallback | None = None) -> ShardResult:
    """Fetch, transform and write every row of ``shard``; commit it atomically with its stats.

    Every input row ends as exactly one status row; a bad url or a failing transform
    is a failed row, never an exception. ``on_sample`` sees each row's final sample
    and the bytes fetched for it (for progress bars).
    """
    source = functools.partial(_open_source, shard, job)
    proxy = job.config.reading.yt_args.proxy_for_shard(shard.shard_id)
    return write_shard(ShardResult(shard_id=shard.shard_id, proxy=proxy), job, source, on_sample)


def write_shard(
    result: ShardResult,
    job: JobConfig,
    source: Source,
    on_sample: SampleCallback | None = None,
    keep: Keeper | None = None,
) -> ShardResult:
    """The one shard loop: write what ``keep`` keeps of an earlier version of the shard, then
    transform, write and count into ``result`` every sample of ``source``; commit the shard
    with its stats. What a killed run left of the shard is finished or cleared first.
    """
    chain = build_subsamplers(job)
    recover(job.output_folder, [job.shard_name(result.shard_id)])
    clear_work_folders(job, result.shard_id)
    Path(job.tmp_dir).mkdir(parents=True, exist_ok=True)
    with (
        # A shard that fails leaves its fetches running (see _fetch_all); one still writing here must
        # not turn the shard's error into "directory not empty". The shard's next attempt clears what is left.
        tempfile.TemporaryDirectory(
            dir=job.tmp_dir, prefix=job_work_prefix(job, result.shard_id), ignore_cleanup_errors=True
        ) as tmp,
        # Deleting a sample's files costs milliseconds on a busy disk: not on the writer's thread.
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="v2d-cleanup") as cleaner,
    ):
        schema, items = source(tmp)
        with make_writer(job.output_format, _target(job, result.shard_id, schema)) as writer:
            if keep is not None:
                keep(writer, tmp)
            for sample, fetched, workdir in items:
                outputs = _finish(sample, fetched, chain, workdir)
                downloaded = fetched.bytes_downloaded if isinstance(fetched, FetchResult) else 0
                result.bytes_downloaded += downloaded
                _write(writer, outputs)
                result.add(outputs[0])
                if chain or not _held_only(fetched):  # a download held in memory made no workdir
                    cleaner.submit(shutil.rmtree, workdir, ignore_errors=True)
                if on_sample is not None:
                    on_sample(outputs[0], downloaded)
            result.end_time = time.time()
            writer.add_stats(result.stats())
    return result


def fetch_samples(samples: list[Sample], job: JobConfig, tmp: str, shard_id: int) -> Iterator[SourceItem]:
    """``samples`` of shard ``shard_id`` with their urls fetched under ``tmp`` on ``thread_count``
    threads, as fetches finish."""
    reading = job.config.reading
    fetcher = make_fetcher(reading, dict(job.encode_formats), shard_id)
    queue = HostQueue(
        ((sample.url, (index, sample)) for index, sample in enumerate(samples)), reading.per_host_connections
    )
    return _fetch_all(queue, fetcher, job.config.distribution.thread_count, tmp)


def _open_source(shard: ShardSpec, job: JobConfig, tmp: str) -> tuple[pa.Schema, Iterator[SourceItem]]:
    """The shard's input schema and its samples with their media: fetched urls, or tar members."""
    if job.input_format == "webdataset":
        fields = [pa.field("url", pa.string())] + [pa.field("caption", pa.string())] * job.save_caption
        return pa.schema(fields), read_tar_samples(shard.input_path, tmp)
    table = read_shard_input(shard)
    samples = list(_samples_from_rows(table, shard.shard_id, job))
    return table.schema, fetch_samples(samples, job, tmp, shard.shard_id)


def _samples_from_rows(table: pa.Table, shard_id: int, job: JobConfig) -> Iterator[Sample]:
    extra_columns = [name for name in table.column_names if name not in ("url", "caption")]
    for index, row in enumerate(table.to_pylist()):
        yield Sample(
            key=job.sample_key(shard_id, index),
            url=row["url"],
            caption=row.get("caption"),
            extra={name: row[name] for name in extra_columns},
        )


def _target(job: JobConfig, shard_id: int, schema: pa.Schema) -> ShardTarget:
    return ShardTarget(
        output_folder=job.output_folder,
        shard_name=job.shard_name(shard_id),
        encode_formats=output_encode_formats(job),
        save_caption=job.save_caption,
        input_schema=schema,
        # retry_failed rewrites a shard on purpose, and only ever turns failed rows into successes
        gate=None if job.incremental_mode == "retry_failed" else job.replace_gate,
    )


def _fetch_all(
    queue: HostQueue[tuple[int, Sample]], fetcher: Fetcher, threads: int, tmp: str
) -> Iterator[SourceItem]:
    """Fetch the queue's samples on ``threads`` threads, at most ``2 * threads`` in flight and as
    many per host as the queue allows; yield as they finish."""
    in_flight: dict[Future[FetchResult], tuple[Sample, Path, str]] = {}
    # Each fetch reports here as it ends: one wake-up per fetch (``wait`` re-armed them all each time).
    finished: SimpleQueue[Future[FetchResult]] = SimpleQueue()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="v2d-fetch")

    def fetch_into(url: str | None, workdir: Path) -> FetchResult:
        # The fetcher makes ``workdir`` when it writes a file there (on its thread: a mkdir can take
        # milliseconds on a busy disk); a download held in memory needs none.
        return fetcher.fetch(check_url(url), workdir)  # a row without a url fails here, as a row

    def submit_more() -> None:
        while len(in_flight) < 2 * threads and (picked := queue.pop()) is not None:
            host, (index, sample) = picked
            workdir = Path(tmp) / str(index)
            future = pool.submit(fetch_into, sample.url, workdir)
            in_flight[future] = (sample, workdir, host)
            future.add_done_callback(finished.put)

    try:
        submit_more()
        while in_flight:
            future = finished.get()
            sample, workdir, host = in_flight.pop(future)
            queue.done(host)
            error = future.exception()
            yield sample, (error if error is not None else future.result()), workdir
            submit_more()
    finally:
        # On an interrupt, do not wait for fetches still in flight; their files die with tmp.
        pool.shutdown(wait=False, cancel_futures=True)


def _finish(sample: Sample, fetched: FetchOutcome, chain: list[Subsampler], workdir: Path) -> list[Sample]:
    """The samples to write for one row: its transforms' outputs, or one failed sample."""
    if isinstance(fetched, BaseException):
        raise_if_disk_full(fetched)
        return [sample.failed(status_for(fetched), describe(fetched), transient=is_transient(fetched))]
    sample.streams = dict(fetched.streams)
    if chain:  # transforms read and write files in the workdir
        workdir.mkdir(exist_ok=True)
        sample.streams.update(_spill(fetched.held, workdir))
    else:
        sample.held = dict(fetched.held)
    sample.metadata.update(fetched.metadata)
    try:
        return apply_subsamplers(chain, sample, workdir) or [
            sample.failed(Status.FAILED_TO_SUBSAMPLE, "subsampling produced no output")
        ]
    except Exception as error:  # a failing transform is a failed row, whatever it raised
        raise_if_disk_full(error)
        return [sample.failed(Status.FAILED_TO_SUBSAMPLE, describe(error))]


def _held_only(fetched: FetchOutcome) -> bool:
    return isinstance(fetched, FetchResult) and not fetched.streams


def _spill(held: dict[str, bytes], workdir: Path) -> dict[str, Path]:
    """Media held in memory written to files in ``workdir`` (held bodies are mp4 family)."""
    files = {}
    for modality, body in held.items():
        files[modality] = workdir / f"held_{modality}.mp4"
        files[modality].write_bytes(body)
    return files


def _write(writer: ShardWriter, samples: list[Sample]) -> None:
    for sample in samples:
        writer.write(sample)
