"""The physical limit of a download: a minimal parallel HTTP fetch writing the same tar files.

Reads a url list, cuts it into shards of ``--per_shard`` urls, and runs the shards on
``--processes`` forked processes of ``--threads`` threads each, as the `video2dataset` CLI
does. Each url is fetched on its own connection with ``http.client`` (a body of known
length read into one buffer, in C) and written as ``{key}.mp4`` plus a small ``{key}.json``
member of ``{shard}.tar`` (by hand, as v2d's writer does, and past the page cache with
:class:`~v2d_core.direct_file.DirectFile`, the cheapest write on a local disk); nothing is
checked, no parquet or stats are written. Used by ``download_throughput.py`` as the raw side:

    python benchmark/raw_fetch.py URL_LIST OUTPUT_FOLDER --processes 2 --threads 8 --per_shard 25
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from v2d_core.direct_file import DirectFile


def fetch(url: str) -> bytes:
    """The body of ``url``, read whole on a fresh connection."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    try:
        connection.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"HTTP {response.status} for {url}")
        return body
    finally:
        connection.close()


def write_member(tar: DirectFile, name: str, data: bytes) -> None:
    """One ustar member: header block, ``data``, zero padding to the block size."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.write(info.tobuf(format=tarfile.PAX_FORMAT))
    tar.write(data)
    tar.write(tarfile.NUL * (-len(data) % tarfile.BLOCKSIZE))


def run_shard(job: tuple[int, list[str], str, int]) -> int:
    """Fetch one shard's urls on ``threads`` threads into ``{shard}.tar``; return the members written."""
    shard_id, urls, output, threads = job
    lock = threading.Lock()
    with DirectFile(str(Path(output) / f"{shard_id:05d}.tar")) as tar:

        def one(index_url: tuple[int, str]) -> None:
            index, url = index_url
            body = fetch(url)
            key = f"{shard_id:05d}{index:02d}"
            meta = json.dumps({"key": key, "url": url, "status": "success"}).encode()
            with lock:
                write_member(tar, f"{key}.mp4", body)
                write_member(tar, f"{key}.json", meta)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, enumerate(urls)))
        tar.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE))
    return len(urls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url_list")
    parser.add_argument("output")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--per_shard", type=int, default=25)
    args = parser.parse_args()
    urls = Path(args.url_list).read_text().split()
    Path(args.output).mkdir(parents=True, exist_ok=True)
    jobs = [
        (shard, urls[start : start + args.per_shard], args.output, args.threads)
        for shard, start in enumerate(range(0, len(urls), args.per_shard))
    ]
    with multiprocessing.get_context("fork").Pool(args.processes) as pool:
        done = sum(pool.imap_unordered(run_shard, jobs))
    if done != len(urls):
        raise SystemExit(f"fetched {done} of {len(urls)} urls")


if __name__ == "__main__":
    main()
