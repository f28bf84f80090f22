"""``defs``: every dataset in ``$V2D_DATASETS_DIR`` (default ``./datasets``) as Dagster assets.

Open the UI with ``dagster dev`` (``workspace.yaml`` points here), or from the command line::

    dagster asset materialize -m v2d_dagster.definitions --select example/shard_plan
    dagster asset materialize -m v2d_dagster.definitions --select example/download --partition 00000
"""

from v2d_dagster.factory import build_definitions

defs = build_definitions()
