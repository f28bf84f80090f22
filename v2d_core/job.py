"""The arguments of one ``video2dataset`` call, validated once and shared by every shard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from v2d_core.config import INCREMENTAL_MODES, INPUT_FORMATS, OUTPUT_FORMATS, STAGES, Config
from v2d_core.errors import ConfigError
from v2d_core.sample import STATUS_COLUMNS
from v2d_core.subsamplers.settings import NO_ENGINE

if TYPE_CHECKING:  # the shards package reads storage (fsspec); the CLI's --help loads neither
    from v2d_core.shards.gate import ReplaceGate
    from v2d_core.shards.layout import ShardLayout

MODALITIES = ("video", "audio", "optical_flow")
RETRY_OUTPUT_FORMATS = ("files", "webdataset", "parquet", "dummy")
NO_ENGINE_STAGES = {"caption": NO_ENGINE["CaptionSubsampler"], "whisper": NO_ENGINE["WhisperSubsampler"]}
"""video2dataset 1.3.0's stages that v2d has no engine for, and the feature each one is."""


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    """Everything a shard needs to know: where from, where to, which columns, which config."""

    url_list: str | Sequence[str]
    output_folder: str = "videos"
    output_format: str = "files"
    input_format: str = "txt"
    encode_formats: Mapping[str, str] = field(default_factory=lambda: {"video": "mp4"})
    stage: str = "download"
    url_col: str = "url"
    caption_col: str | None = None
    clip_col: str | None = None
    save_additional_columns: Sequence[str] = ()
    incremental_mode: str = "incremental"
    max_shard_retry: int = 1
    tmp_dir: str = "/tmp"
    config: Config = field(default_factory=Config)
    # When a shard may replace one written before (None: always; the command line's default).
    replace_gate: ReplaceGate | None = None

    def __post_init__(self) -> None:
        if self.stage in NO_ENGINE_STAGES:
            raise ConfigError(f"stage {self.stage!r}: v2d has no engine for {NO_ENGINE_STAGES[self.stage]}")
        for name, value, allowed in (
            ("input_format", self.input_format, INPUT_FORMATS),
            ("output_format", self.output_format, OUTPUT_FORMATS),
            ("stage", self.stage, STAGES),
            ("incremental_mode", self.incremental_mode, INCREMENTAL_MODES),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        unknown = sorted(set(self.encode_formats) - set(MODALITIES))
        if unknown:
            raise ConfigError(f"encode_formats has unknown modality {unknown}; use {', '.join(MODALITIES)}")
        if self.max_shard_retry < 0:
            raise ConfigError(f"max_shard_retry must be >= 0, got {self.max_shard_retry}")
        self._check_retry_failed()
        if self.config.storage.captions_are_subtitles and self.clip_col is not None:
            raise ConfigError("clip_col with storage.captions_are_subtitles: clips come from the subtitles")
        self._check_additional_columns()
        reprocessing = self.stage in ("subset", "optical_flow")
        if reprocessing != (self.input_format == "webdataset"):
            raise ConfigError(
                f"stage {self.stage!r} with input_format {self.input_format!r}: the subset and optical_flow "
                "stages read webdataset tars (input_format='webdataset'), the download stage reads url lists"
            )

    def _check_additional_columns(self) -> None:
        """A user column may not take the name of a column v2d writes (the parquet would hold it
        twice, and the json would lose the sample's own key or status)."""
        reserved = [name for name in self.save_additional_columns if name in STATUS_COLUMNS]
        if reserved:
            raise ConfigError(
                f"save_additional_columns {reserved}: v2d writes columns of these names itself "
                f"({', '.join(STATUS_COLUMNS)}); rename the column in the url list"
            )

    def _check_retry_failed(self) -> None:
        if self.incremental_mode != "retry_failed":
            return
        if self.input_format == "webdataset":
            raise ConfigError("incremental_mode 'retry_failed' fetches urls again: give a url list, not tars")
        if self.output_format not in RETRY_OUTPUT_FORMATS:
            raise ConfigError(
                f"incremental_mode 'retry_failed' rewrites shards in place; output_format "
                f"{self.output_format!r} is not supported, use one of {', '.join(RETRY_OUTPUT_FORMATS)}"
            )

    @property
    def save_caption(self) -> bool:
        """Whether samples carry a ``.txt`` caption."""
        return (
            self.caption_col is not None
            or self.config.storage.captions_are_subtitles
            or self.input_format == "webdataset"
        )

    def shard_name(self, shard_id: int) -> str:
        """Zero-padded shard id, e.g. ``00042``."""
        return f"{shard_id:0{self.config.storage.oom_shard_count}d}"

    def shard_layout(self, shard_id: int) -> ShardLayout:
        """The file names of shard ``shard_id`` in the output folder."""
        from v2d_core.shards.layout import ShardLayout  # fsspec stays out of ``--help``

        return ShardLayout(self.output_folder, self.shard_name(shard_id), self.output_format)

    def sample_key(self, shard_id: int, row_index: int) -> str:
        """Key of row ``row_index`` of shard ``shard_id``, as video2dataset 1.3.0's code computes it."""
        digits = self.config.storage.oom_sample_per_shard
        if digits == 0:  # one sample per shard: the key is the shard id
            return self.shard_name(shard_id)
        return f"{self.shard_name(shard_id)}{row_index:0{digits}d}"


def options_from_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise video2dataset-style keyword values (None for defaults, a comma string for a list)."""
    options = {name: value for name, value in kwargs.items() if value is not None}
    columns = options.get("save_additional_columns")
    if isinstance(columns, str):
        options["save_additional_columns"] = [c.strip() for c in columns.split(",") if c.strip()]
    elif columns is not None:
        options["save_additional_columns"] = list(columns)
    return options
