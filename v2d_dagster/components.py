"""``Dataset``: a v2d dataset as a Dagster Component, one ``defs.yaml`` per dataset in the defs folder.

Its attributes are the keys of a dataset file (:mod:`v2d_dagster.spec`)::

    # v2d_dagster/defs/clips/defs.yaml
    type: v2d_dagster.components.Dataset
    attributes:
      name: clips
      url_list: clips.csv              # relative to this folder
      input_format: csv
      output_root: ../../../data/clips
      stages:
        download: {output_format: webdataset, number_sample_per_shard: 1000}

``dg scaffold defs v2d_dagster.components.Dataset clips`` writes such a folder with an empty
``clips.csv``; ``dg check defs`` validates every stage's config.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import yaml
from dagster.components import Component, ComponentLoadContext, Model, Resolvable, Scaffolder, ScaffoldRequest
from dagster.components.scaffold.scaffold import scaffold_with

from v2d_dagster.factory import build_dataset_definitions
from v2d_dagster.spec import COMPONENT_FILE, COMPONENT_TYPE, dataset_from_file


class DatasetScaffolder(Scaffolder):
    """``dg scaffold defs``: a dataset named after its folder, reading an empty ``{name}.csv``."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        folder = request.target_path
        name = folder.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.csv").write_text("url,caption\n")
        attributes = {
            "name": name,
            "url_list": f"{name}.csv",
            "input_format": "csv",
            "url_col": "url",
            "caption_col": "caption",
            "output_root": f"../../../data/{name}",
            "stages": {"download": {"output_format": "webdataset", "number_sample_per_shard": 1000}},
        }
        text = yaml.safe_dump({"type": COMPONENT_TYPE, "attributes": attributes}, sort_keys=False)
        (folder / COMPONENT_FILE).write_text(text)


@scaffold_with(DatasetScaffolder)
class Dataset(Component, Model, Resolvable):
    """A dataset: its url list (or input tars), its output root and its stages, as in a dataset file.

    Unset keys take the dataset file's defaults.
    """

    name: str
    url_list: str | list[str]
    output_root: str
    input_format: str | None = None
    url_col: str | None = None
    caption_col: str | None = None
    clip_col: str | None = None
    save_additional_columns: list[str] | None = None
    description: str | None = None
    automation: bool | None = None
    automation_interval_seconds: int | None = None
    schedules: dict[str, str] | None = None
    upstream_asset: str | None = None
    stages: dict[str, dict[str, Any] | None] | None = None

    def build_defs(self, context: ComponentLoadContext) -> dg.Definitions:
        attributes = {key: value for key, value in self.model_dump().items() if value is not None}
        return build_dataset_definitions(dataset_from_file(attributes, context.path / COMPONENT_FILE))
