"""Typed configuration in video2dataset's YAML shape, validated on construction.

A config file has four sections, ``subsampling``, ``reading``, ``storage`` and
``distribution``, exactly as video2dataset 1.3.0 reads them, so an existing file
works. Every section, subsamplers included, is parsed into typed values when the
config is built; unknown keys and bad values raise :class:`ConfigError` naming them.
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
from v2d_core.runners.sbatch import SlurmArgs
from v2d_core.subsamplers.settings import OpticalFlowArgs, SubsamplingConfig

INPUT_FORMATS = ("txt", "csv", "tsv", "tsv.gz", "json", "jsonl", "parquet", "webdataset")
OUTPUT_FORMATS = ("files", "webdataset", "parquet", "tfrecord", "dummy")
STAGES = ("download", "subset", "optical_flow")
INCREMENTAL_MODES = ("incremental", "overwrite", "retry_failed")
DISTRIBUTORS = ("multiprocessing", "pyspark", "slurm")
DEFAULT_MAX_PIXELS = 8192 * 8192
"""Largest video frame (width x height) v2d decodes: 8K UHD either way up passes, a decompression bomb not."""
ALLOW_PRIVATE_NETWORKS_ENV = "V2D_ALLOW_PRIVATE_NETWORKS"
# img2dataset's default: X-Robots-Tag directives that exclude a file from the dataset
DISALLOWED_HEADER_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
# the decoder_kwargs of video2dataset 1.3.0's dataloader (reading.dataloader_args)
DECODER_KWARGS = ("n_frames", "fps", "num_threads", "return_bytes", "uniformly_sample", "pad_frames")
YTDL_RESERVED_OPTIONS = frozenset({"outtmpl", "paths", "cachedir", "download_archive"})
"""yt-dlp options v2d sets itself: its files stay inside each sample's work folder."""


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class YtArgs:
    """yt-dlp options: video2dataset's three plus common pass-through ones.

    ``proxy`` is one url or a list: shard ``n`` uses ``proxy[n % len(proxy)]``, for yt-dlp and
    direct files alike. ``cookies_from_browser`` is yt-dlp's ``BROWSER[+KEYRING][:PROFILE][::CONTAINER]``;
    ``extractor_args`` is yt-dlp's, e.g. ``{"youtube": {"player_client": ["mweb"]}}``.
    """

    download_size: int = 360
    download_audio_rate: int = 44100
    yt_metadata_args: Mapping[str, Any] | None = None
    cookiefile: str | None = None
    cookies_from_browser: str | None = None
    proxy: str | Sequence[str] | None = None
    extractor_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    format: str | None = None
    retries: int = 3
    ytdl_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive("reading.yt_args.download_size", self.download_size)
        if self.yt_metadata_args is not None:
            _as_mapping("reading.yt_args.yt_metadata_args", self.yt_metadata_args)
        reserved = sorted(
            YTDL_RESERVED_OPTIONS & set(_as_mapping("reading.yt_args.ytdl_options", self.ytdl_options))
        )
        if reserved:
            raise ConfigError(
                f"reading.yt_args.ytdl_options may not set {', '.join(reserved)}: v2d keeps yt-dlp's "
                "files inside the sample's work folder"
            )
        if self.download_audio_rate < 0:
            raise ConfigError(
                f"reading.yt_args.download_audio_rate must be >= 0, got {self.download_audio_rate}"
            )
        object.__setattr__(self, "proxy", _proxies(self.proxy))
        object.__setattr__(self, "extractor_args", _extractor_args(self.extractor_args))

    def proxy_for_shard(self, shard_id: int) -> str | None:
        """The proxy shard ``shard_id`` fetches through (the list rotates per shard), or None."""
        proxies = self.proxy
        if isinstance(proxies, str) or proxies is None:
            return proxies
        return proxies[shard_id % len(proxies)]


@dataclass(frozen=True, kw_only=True)
class DataloaderArgs:
    """``reading.dataloader_args``: how video2dataset 1.3.0's optical_flow stage decodes frames.

    With an ``OpticalFlowSubsampler``, ``decoder_kwargs.fps`` is its frame rate (None: every
    frame) and ``resize_size`` the short side of its frames (None: full size), as in 1.3.0;
    the other keys are accepted as 1.3.0's files write them.
    """

    batch_size: int = 1
    resize_size: int | Sequence[int] | None = None
    decoder_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive("reading.dataloader_args.batch_size", self.batch_size)
        sizes = [self.resize_size] if isinstance(self.resize_size, int) else self.resize_size or []
        if not isinstance(sizes, Sequence) or len(sizes) > 2:
            raise ConfigError("reading.dataloader_args.resize_size must be a number or [height, width]")
        for size in sizes:
            _positive("reading.dataloader_args.resize_size", size)
        kwargs = _as_mapping("reading.dataloader_args.decoder_kwargs", self.decoder_kwargs)
        _reject_unknown("reading.dataloader_args.decoder_kwargs", kwargs, set(DECODER_KWARGS))
        if kwargs.get("fps") is not None:
            _positive("reading.dataloader_args.decoder_kwargs.fps", kwargs["fps"])

    def flow_args(self, args: OpticalFlowArgs) -> OpticalFlowArgs:
        """``args`` with 1.3.0's frame rate and size from these settings (a conflict is an error)."""
        if self.resize_size is not None and not isinstance(self.resize_size, int):
            raise ConfigError(
                f"reading.dataloader_args.resize_size {list(self.resize_size)}: optical flow resizes "
                "frames by their short side, give one number"
            )
        fps = self.decoder_kwargs.get("fps") or -1
        for name, ours, theirs, unset in (
            ("fps", args.fps, fps, -1),
            ("downsample_size", args.downsample_size, self.resize_size, None),
        ):
            if ours not in (unset, theirs) and theirs != unset:
                raise ConfigError(
                    f"OpticalFlowSubsampler.{name} {ours!r} and reading.dataloader_args ({theirs!r}) "
                    "disagree; set one of them"
                )
        return dataclasses.replace(
            args,
            fps=fps if fps != -1 else args.fps,
            downsample_size=self.resize_size if self.resize_size is not None else args.downsample_size,
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
    dataloader_args: DataloaderArgs | None = None
    timeout: float = 60
    connect_timeout: float = 10
    retries: int = 3
    retry_backoff: float = 0.5
    max_file_size: int = 2 * 1024**3
    max_subtitle_size: int = 16 * 1024**2  # one subtitle file yt-dlp fetches
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_duration: float | None = None
    fetch_deadline: float = 1800
    allow_private_networks: bool = field(default_factory=private_networks_default)
    allowed_networks: Sequence[str] = ()
    disallowed_header_directives: Sequence[str] = DISALLOWED_HEADER_DIRECTIVES
    per_host_connections: int = 4
    per_host_rate: float | None = None
    sampler: Callable[[list[int]], list[int]] | None = None

    def __post_init__(self) -> None:
        _positive("reading.timeout", self.timeout)
        if isinstance(self.per_host_connections, bool) or not isinstance(self.per_host_connections, int):
            raise ConfigError(
                f"reading.per_host_connections must be an integer, got {self.per_host_connections!r}"
            )
        _positive("reading.per_host_connections", self.per_host_connections)
        if self.per_host_rate is not None:
            _positive("reading.per_host_rate", self.per_host_rate)
        _positive("reading.connect_timeout", self.connect_timeout)
        _positive("reading.max_file_size", self.max_file_size)
        _positive("reading.max_subtitle_size", self.max_subtitle_size)
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
    """How shards are run: a local process pool (``multiprocessing``), Spark (``pyspark``) or a Slurm
    job array (``slurm``).

    ``distributor_args``: Spark settings (``spark.*``) for pyspark; 1.3.0's Slurm arguments
    otherwise, checked here (a Slurm config run with ``multiprocessing`` keeps them, unused).
    """

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
        if self.distributor_args is not None:
            self._check_distributor_args(_as_mapping("distribution.distributor_args", self.distributor_args))

    def _check_distributor_args(self, args: Mapping[str, Any]) -> None:
        """pyspark takes Spark settings; otherwise the keys are 1.3.0's Slurm arguments."""
        if self.distributor != "pyspark":
            SlurmArgs.from_mapping(args)
            return
        not_spark = sorted(str(key) for key in args if not str(key).startswith("spark."))
        if not_spark:
            raise ConfigError(
                "distribution.distributor_args of pyspark are Spark settings (spark.*); "
                f"got {', '.join(not_spark)}"
            )


@dataclass(frozen=True, kw_only=True)
class Config:
    """The four sections of a video2dataset config file."""

    subsampling: SubsamplingConfig = field(default_factory=SubsamplingConfig)
    reading: ReadingConfig = field(default_factory=ReadingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)

    def __post_init__(self) -> None:
        flow, loader = self.subsampling.optical_flow, self.reading.dataloader_args
        if flow is not None and loader is not None:
            subsampling = dataclasses.replace(self.subsampling, optical_flow=loader.flow_args(flow))
            object.__setattr__(self, "subsampling", subsampling)
        if self.storage.captions_are_subtitles:  # video2dataset 1.3.0 forces subtitle fetching
            yt_args = self.reading.yt_args
            metadata = dict(yt_args.yt_metadata_args or {})
            metadata["writesubtitles"] = metadata.get("writesubtitles") or "all"
            yt_args = dataclasses.replace(yt_args, yt_metadata_args=metadata)
            object.__setattr__(self, "reading", dataclasses.replace(self.reading, yt_args=yt_args))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Config:
        """Build a config from a parsed YAML mapping; unknown keys are errors."""
        data = _as_mapping("config", data)
        _reject_unknown("config", data, set(SECTIONS))
        return cls(**{name: build(data.get(name) or {}) for name, build in SECTIONS.items()})

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
        """This config with some fields of its sections replaced, e.g. ``{"storage": {...}}``.

        Values go through the same parsing as a file's (``yt_args`` may be a mapping).
        """
        merged: dict[str, Any] = {}
        for section, values in overrides.items():
            if section not in SECTIONS or section == "subsampling":
                raise ConfigError(f"unknown config section {section!r}")
            current = getattr(self, section)
            fields = {f.name: getattr(current, f.name) for f in dataclasses.fields(current)}
            _reject_unknown(section, values, set(fields))
            merged[section] = SECTIONS[section]({**fields, **values})
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


def _proxies(value: Any) -> str | tuple[str, ...] | None:
    """One proxy url, or a non-empty list of them (a tuple)."""
    if value is None or isinstance(value, str):
        return value
    proxies = tuple(_words("reading.yt_args.proxy", value))
    if not proxies:
        raise ConfigError("reading.yt_args.proxy must be a url or a non-empty list of urls, got []")
    return proxies


def _extractor_args(value: Any) -> dict[str, dict[str, list[str]]]:
    """yt-dlp's ``extractor_args`` shape: extractor -> argument -> list of strings (a string is one)."""
    result: dict[str, dict[str, list[str]]] = {}
    for extractor, arguments in _as_mapping("reading.yt_args.extractor_args", value).items():
        name = f"reading.yt_args.extractor_args.{extractor}"
        result[str(extractor).lower()] = {
            str(key): [item] if isinstance(item, str) else _words(f"{name}.{key}", item)
            for key, item in _as_mapping(name, arguments).items()
        }
    return result


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


def _reading(data: Any) -> ReadingConfig:
    reading = dict(_as_mapping("reading", data))
    if not isinstance(reading.get("yt_args", YtArgs()), YtArgs):
        reading["yt_args"] = _build(YtArgs, "reading.yt_args", reading["yt_args"] or {})
    if isinstance(reading.get("dataloader_args"), Mapping):
        reading["dataloader_args"] = _build(
            DataloaderArgs, "reading.dataloader_args", reading["dataloader_args"]
        )
    return _build(ReadingConfig, "reading", reading)  # type: ignore[no-any-return]


SECTIONS: dict[str, Callable[[Any], Any]] = {
    "subsampling": SubsamplingConfig.from_mapping,
    "reading": _reading,
    "storage": lambda data: _build(StorageConfig, "storage", data),
    "distribution": lambda data: _build(DistributionConfig, "distribution", data),
}
"""Each section's name and the parser that turns its mapping into typed values."""
