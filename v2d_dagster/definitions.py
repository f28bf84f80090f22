"""``defs``: v2d's datasets as Dagster definitions, what ``dg`` and ``workspace.yaml`` load.

By default, the ``dg`` project's defs folder ``v2d_dagster/defs/``: one
:class:`~v2d_dagster.components.Dataset` component per folder (``dg dev``, ``dg launch``,
``dg check defs``). With ``$V2D_DATASETS_DIR`` set, the datasets of that folder instead
(dataset YAML files or component folders): the deploy image, Slurm arrays and tests name
theirs that way.
"""

import os
from pathlib import Path

import dagster as dg

from v2d_dagster.factory import build_definitions, with_executor
from v2d_dagster.spec import DATASETS_DIR_ENV


def load_defs() -> dg.Definitions:
    """The datasets of ``$V2D_DATASETS_DIR`` when it is set, else of the project's defs folder."""
    if os.environ.get(DATASETS_DIR_ENV):
        return build_definitions()
    return with_executor(dg.load_from_defs_folder(path_within_project=Path(__file__).parent))


defs = load_defs()
