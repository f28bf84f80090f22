"""Which tar shards a dataset reads, and opening each one as a stream.

``urls`` is a braceexpand pattern (``data/{00000..00099}.tar``), a list of them, or a folder
(its ``*.tar`` in order), on any fsspec filesystem (``s3://``, ``gs://``, ``http://``...).
``pipe:`` urls (a shell command writing the tar) go to webdataset's opener.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import braceexpand
import fsspec
from webdataset.gopen import gopen

from v2d_core.errors import ConfigError

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def shard_urls(urls: str | Sequence[str]) -> list[str]:
    """Every shard ``urls`` names, in order; a folder stands for the ``*.tar`` in it."""
    patterns = [urls] if isinstance(urls, str) else list(urls)
    found: list[str] = []
    for url in (expanded for pattern in patterns for expanded in braceexpand.braceexpand(pattern)):
        if url.startswith("pipe:") or url.endswith(SHARD_SUFFIXES):
            found.append(url)
            continue
        fs, path = fsspec.core.url_to_fs(url)
        if not fs.isdir(path):
            raise ConfigError(f"{url} is neither a tar shard nor a folder of them")
        names = sorted(fs.glob(f"{path.rstrip('/')}/*.tar"))
        found += [name if "file" in fs.protocol else fs.unstrip_protocol(name) for name in names]
    if not found:
        raise ConfigError(f"no tar shard found in {urls}")
    return found


def open_shards(
    sources: Iterable[dict[str, Any]], handler: Callable[[BaseException], bool]
) -> Iterator[dict[str, Any]]:
    """Pipeline stage: ``{"url"}`` in, ``{"url", "stream"}`` out; each stream closes when the next opens."""
    for source in sources:
        url = source["url"]
        try:
            stream = gopen(url) if url.startswith("pipe:") else fsspec.open(url, "rb").open()
        except Exception as error:
            if handler(error):
                continue
            break
        with stream:
            yield {"url": url, "stream": stream}
