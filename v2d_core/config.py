"""Typed configuration in video2dataset's YAML shape, validated on construction.

A config file has four sections, ``subsampling``, ``reading``, ``storage`` and
``distribution``, exactly as video2dataset 1.3.0 reads them, so an existing file
works. Unknown keys and bad values raise :class:`ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from v2d_core.errors import ConfigError

INPUT_FORMATS = ("txt", "csv", "tsv", "tsv.gz", "json", "jsonl", "parquet", "webdataset")
OUTPUT_FORMATS = ("files", "webdataset", "parquet", "tfrecord", "dummy")
STAGES = ("download", "subset", "optical_flow")
INCREMENTAL_MODES = ("incremental", "overwrite", "retry_failed")
DISTRIBUTORS = ("multiprocessing", "pyspark")
DEFAULT_MAX_PIXELS = 8192 * 8192
"""Largest video frame (width x height) v2d decodes: 8K UHD either way up passes, a decompression bomb not."""
ALLOW_PRIVATE_NETWORKS_ENV = "V2D_ALLOW_PRIVATE_NETWORKS"
# img2dataset's default: X-Robots-Tag directives that exclude a file from the dataset
DISALLOWED_HEADER_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class YtArgs:
    """yt-dlp options: video2dataset's three plus common pass-through ones."""

    download_size: int = 360
    download_audio_rate: int = 44100
    yt_metadata_args: Mapping[str, Any] | None = None
    cookiefile: str | None = None
    proxy: str | None = None
    format: str | None = None
    retries: int = 3
    ytdl_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive("reading.yt_args.download_size", self.download_size)
        if self.download_audio_rate < 0:
            raise ConfigError(
                f"reading.yt_args.download_audio_rate must be >= 0, got {self.download_audio_rate}"
            )


def private_networks_default() -> bool:
    """``allow_private_networks`` when not given: true when ``V2D_ALLOW_PRIVATE_NETWORKS=1`` is set."""
    return os.environ.get(ALLOW_PRIVATE_NETWORKS_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True, kw_only=True)
class ReadingConfig:
    """How samples are fetched, and the limits and guards around each fetch.

    ``allow_private_networks`` turns the address guard off (loopback, private, link-local and
    reserved addresses are refused by default); ``allowed_networks`` lets chosen networks
    through while it stays on. ``fetch_deadline`` bounds one url's whole fetch, every attempt
    and yt-dlp included; ``max_duration`` (seconds, None: no limit) fails longer media.
    """

    yt_args: YtArgs = field(default_factory=YtArgs)
    timeout: float = 60
    connect_timeout: float = 10
    retries: int = 3
    retry_backoff: float = 0.5
    max_file_size: int = 2 * 1024**3
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_duration: float | None = None
    fetch_deadline: float = 1800
    allow_private_networks: bool = field(default_factory=private_networks_default)
    allowed_networks: Sequence[str] = ()
    disallowed_header_directives: Sequence[str] = DISALLOWED_HEADER_DIRECTIVES
    sampler: Callable[[list[int]], list[int]] | None = None

    def __post_init__(self) -> None:
        _positive("reading.timeout", self.timeout)
        _positive("reading.connect_timeout", self.connect_timeout)
        _positive("reading.max_file_size", self.max_file_size)
        _positive("reading.max_pixels", self.max_pixels)
        _positive("reading.fetch_deadline", self.fetch_deadline)
        if self.max_duration is not None:
            _positive("reading.max_duration", self.max_duration)
        if self.retries < 0:
            raise ConfigError(f"reading.retries must be >= 0, got {self.retries}")
        if not isinstance(self.allow_private_networks, bool):
            raise ConfigError(
                f"reading.allow_private_networks must be true or false, got {self.allow_private_networks!r}"
            )
        object.__setattr__(self, "allowed_networks", _networks(self.allowed_networks))
        object.__setattr__(
            self, "disallowed_header_directives", _directives(self.disallowed_header_directives)
        )


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    """How samples are grouped into shards and named."""

    number_sample_per_shard: int = 1000
    oom_shard_count: int = 5
    captions_are_subtitles: bool = False

    def __post_init__(self) -> None:
        _positive("storage.number_sample_per_shard", self.number_sample_per_shard)
        _positive("storage.oom_shard_count", self.oom_shard_count)

    @property
    def oom_sample_per_shard(self) -> int:
        """Digits of the row index in a sample key (video2dataset 1.3.0's rule)."""
        return math.ceil(math.log10(self.number_sample_per_shard))


@dataclass(frozen=True, kw_only=True)
class DistributionConfig:
    """How shards are run: a local process pool (``multiprocessing``) or Spark (``pyspark``)."""

    processes_count: int = 16
    thread_count: int = 32
    subjob_size: int = 1000
    distributor: str = "multiprocessing"
    distributor_args: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _positive("distribution.processes_count", self.processes_count)
        _positive("distribution.thread_count", self.thread_count)
        _positive("distribution.subjob_size", self.subjob_size)
        if self.distributor not in DISTRIBUTORS:
            raise ConfigError(
                f"distribution.distributor {self.distributor!r} is not supported; "
                f"choose one of {', '.join(DISTRIBUTORS)}"
            )


@dataclass(frozen=True, kw_only=True)
class Config:
    """The four sections of a video2dataset config file."""

    subsampling: Mapping[str, Any] = field(default_factory=dict)
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Config:
        """Build a config from a parsed YAML mapping; unknown keys are errors."""
        data = _as_mapping("config", data)
        _reject_unknown("config", data, {f.name for f in dataclasses.fields(cls)})
        reading = dict(_as_mapping("reading", data.get("reading") or {}))
        if "yt_args" in reading:
            reading["yt_args"] = _build(YtArgs, "reading.yt_args", reading["yt_args"] or {})
        return cls(
            subsampling=_as_mapping("subsampling", data.get("subsampling") or {}),
            reading=_build(ReadingConfig, "reading", reading),
            storage=_build(StorageConfig, "storage", data.get("storage") or {}),
            distribution=_build(DistributionConfig, "distribution", data.get("distribution") or {}),
        )

    @classmethod
    def load(cls, source: str | Mapping[str, Any] | Config) -> Config:
        """A config from a preset name (``default``), a YAML path (any fsspec url) or a mapping."""
        import fsspec  # imported where used: ``video2dataset --help`` needs neither
        import yaml

        if isinstance(source, Config):
            return source
        if isinstance(source, Mapping):
            return cls.from_mapping(source)
        if source in preset_names():
            text = resources.files("v2d_core.presets").joinpath(f"{source}.yaml").read_text()
        else:
            try:
                with fsspec.open(source, "r") as handle:
                    text = handle.read()
            except FileNotFoundError:
                raise ConfigError(
                    f"config {source!r} is neither a preset ({', '.join(preset_names())}) nor a readable file"
                ) from None
        return cls.from_mapping(yaml.safe_load(text) or {})

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Config:
        """This config with some fields of its sections replaced, e.g. ``{"storage": {...}}``."""
        merged: dict[str, Any] = {}
        for section, values in overrides.items():
            current = getattr(self, section, None)
            if not dataclasses.is_dataclass(current) or isinstance(current, type):
                raise ConfigError(f"unknown config section {section!r}")
            _reject_unknown(section, values, {f.name for f in dataclasses.fields(current)})
            merged[section] = dataclasses.replace(current, **values)
        return dataclasses.replace(self, **merged)


def preset_names() -> list[str]:
    """Names of the built-in presets."""
    folder = resources.files("v2d_core.presets")
    return sorted(Path(entry.name).stem for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def _as_mapping(name: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping, got {type(value).__name__}")
    return value


def _reject_unknown(name: str, data: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in {name}: {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
        )


def _words(name: str, value: Any) -> list[str]:
    """A list of strings given as a list or a comma-separated string."""
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, Sequence) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{name} must be a list of strings, got {value!r}")
    return [item.strip() for item in value]


def _networks(value: Any) -> tuple[str, ...]:
    networks = []
    for item in _words("reading.allowed_networks", value):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(
                f"reading.allowed_networks: {item!r} is not a network such as 10.1.0.0/16 or fd00::/8"
            ) from None
    return tuple(networks)


def _directives(value: Any) -> tuple[str, ...]:
    return tuple(item.lower() for item in _words("reading.disallowed_header_directives", value))


def _build(kind: type, name: str, data: Any) -> Any:
    data = _as_mapping(name, data)
    _reject_unknown(name, data, {f.name for f in dataclasses.fields(kind)})
    try:
        return kind(**data)
    except TypeError as error:
        raise ConfigError(f"{name}: {error}") from None
