"""The deploy image's dependency set: ``v2d[image]`` (pyproject.toml) and everything it requires.

``deploy/Dockerfile`` installs ``.[image]`` under ``deploy/constraints.txt``, which pins every
distribution of that set to the version the tests ran with::

    python deploy/image_requirements.py pin     # rewrite deploy/constraints.txt from this environment
    python deploy/image_requirements.py probe CONFIG.json   # inside a venv: import what CONFIG names

``image_venv`` builds, offline, a virtualenv holding exactly that set (each distribution's
installed files linked from this environment), so a package missing from the requirements is
missing there too. ``probe`` runs in it: it imports every class an instance config names and
loads the entry point and code location of each pod command line.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import venv
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent
CONSTRAINTS = DEPLOY / "constraints.txt"
PROJECT, EXTRA = "v2d", "image"
BASE_IMAGE = frozenset({"pip", "setuptools", "wheel"})  # python:3.11-slim ships these
# Required by a dependency but replaced in the image: scenedetect 0.7 requires the GUI build of
# OpenCV (libGL, which the slim image lacks); the Dockerfile removes it, and cv2 is the headless one.
REPLACED = {"opencv-python": "opencv-python-headless"}
# storage: postgres (the shorthand of deploy/dagster-postgres.yaml and the chart) -> its classes
POSTGRES_STORAGE = [
    ("dagster_postgres", "PostgresRunStorage"),
    ("dagster_postgres", "PostgresEventLogStorage"),
    ("dagster_postgres", "PostgresScheduleStorage"),
]


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def image_distributions(project: str = PROJECT, extras: Iterable[str] = (EXTRA,)) -> dict[str, Any]:
    """Canonical name -> installed distribution, for ``project[extras]`` and all it requires."""
    from packaging.requirements import Requirement  # dagster's own dependency

    found: dict[str, Any] = {}
    active: dict[str, set[str]] = {}
    todo = [(project, frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        key = _canonical(name)
        if key in REPLACED or (key in active and wanted <= active[key]):
            continue
        active.setdefault(key, set()).update(wanted)
        try:
            found[key] = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} (required by {project}[{','.join(extras)}]) is not installed") from None
        for text in found[key].requires or []:
            requirement = Requirement(text)
            markers = [{"extra": extra} for extra in sorted(active[key])] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(m) for m in markers):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return found


def pins(distributions: Mapping[str, Any]) -> dict[str, str]:
    """``name -> version`` of the distributions the image installs (not the project, not pip's own)."""
    return {
        key: dist.version
        for key, dist in sorted(distributions.items())
        if key != PROJECT and key not in BASE_IMAGE
    }


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """The ``name==version`` lines of a constraints file."""
    result = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            result[_canonical(name)] = version.strip()
    return result


def write_constraints(path: Path = CONSTRAINTS) -> None:
    header = (
        "# Every distribution deploy/Dockerfile installs (v2d[image] and all it requires), pinned to\n"
        "# the versions the tests ran with. Regenerate: python deploy/image_requirements.py pin\n"
    )
    lines = [f"{name}=={version}\n" for name, version in pins(image_distributions()).items()]
    path.write_text(header + "".join(lines))


def image_venv(folder: Path, distributions: Mapping[str, Any]) -> Path:
    """A virtualenv (no system site-packages) holding exactly ``distributions``, linked from their
    installed files, and the project's source tree; its python."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # the project itself from its source tree, as the image's `pip install .` copies it
    (Path(site) / f"{PROJECT}.pth").write_text(f"{DEPLOY.parent}\n")
    for name, dist in distributions.items():
        if name == PROJECT:
            continue
        if dist.files is None:
            raise SystemExit(f"{name} has no RECORD: cannot tell its files")
        for file in dist.files:
            if file.parts[0] == "..":  # console scripts outside site-packages
                continue
            target = Path(site) / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(Path(dist.locate_file(file)).resolve())
    return python


def _configured_classes(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(module, class) of every configurable class an instance config names."""
    classes = []
    for value in config.values():
        if isinstance(value, Mapping) and "module" in value and "class" in value:
            classes.append((value["module"], value["class"]))
    if "postgres" in config.get("storage", {}):
        classes += POSTGRES_STORAGE
    return classes


def probe(request: Mapping[str, Any]) -> list[str]:
    """In the image's venv: what fails to import or load; empty when all is there.

    ``request``: ``instance`` (an instance config), ``commands`` (pod command lines), ``env``
    (the pods' environment), ``code_module`` (the code location's module), ``filesystems``
    (fsspec protocols of the datasets' paths), ``modules`` (more modules the stages import).
    """
    os.environ.update(request["env"])
    checks: list[tuple[str, Callable[[], object]]] = [
        (f"instance config: {module}.{name}", partial(_load_class, module, name))
        for module, name in _configured_classes(request["instance"])
    ]
    scheme = request["instance"].get("storage", {}).get("postgres", {}).get("postgres_db", {}).get("scheme")
    if scheme:
        checks.append((f"instance config: storage scheme {scheme}", partial(_load_dialect, scheme)))
    checks += [(f"pod command {' '.join(c[:3])}", partial(_load_script, c[0])) for c in request["commands"]]
    checks += [(f"filesystem {p}://", partial(_load_filesystem, p)) for p in request["filesystems"]]
    checks += [(f"module {m}", partial(importlib.import_module, m)) for m in request["modules"]]
    # with V2D_EXECUTOR=k8s in the environment, this imports dagster_k8s's executor too
    code = request["code_module"]
    checks.append((f"code location {code}", partial(importlib.import_module, code)))
    return [problem for label, load in checks if (problem := _failure(label, load))]


def _failure(label: str, load: Callable[[], object]) -> str | None:
    try:
        load()
    except Exception as error:
        return f"{label}: {type(error).__name__}: {error}"
    return None


def _load_class(module: str, name: str) -> object:
    """The class as the instance loads it (dagster maps ``dagster.core`` to ``dagster._core``)."""
    from dagster._serdes.config_class import ConfigurableClassData

    data = ConfigurableClassData(module, name, "{}")
    return getattr(importlib.import_module(data.module_name), data.class_name)


def _load_dialect(scheme: str) -> object:
    from sqlalchemy.engine import make_url

    return make_url(f"{scheme}://u@127.0.0.1/db").get_dialect().import_dbapi()


def _load_script(name: str) -> object:
    (script,) = metadata.entry_points(group="console_scripts", name=name)
    return script.load()


def _load_filesystem(protocol: str) -> object:
    return importlib.import_module("fsspec").get_filesystem_class(protocol)


def main(argv: list[str]) -> int:
    if argv[:1] == ["pin"]:
        write_constraints()
        return 0
    if argv[:1] == ["probe"] and len(argv) == 2:
        problems = probe(json.loads(Path(argv[1]).read_text()))
        print("\n".join(problems) or "ok")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
