"""A clean install: the wheel built from this tree, in a fresh venv, runs ``v2d-demo`` and ``v2d-doctor``.

The venv imports v2d from the wheel only (never from this tree); its dependencies come from
the environment running the tests, so the test stays offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "v2d_core", "v2d_dagster")


def build_wheel(folder: Path) -> Path:
    """``pip wheel`` of a copy of the sources (so the build leaves nothing in this tree)."""
    source = folder / "source"
    source.mkdir(parents=True)
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*command, "-w", str(folder / "dist"), str(source)], check=True, timeout=600)
    (wheel,) = (folder / "dist").glob("v2d-*.whl")
    return wheel


def fresh_venv(folder: Path) -> Path:
    """A new venv whose site-packages sees this environment's packages, but not its v2d."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=300)
    python = folder / "bin" / "python"
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [path for path in sys.path if path.endswith("site-packages") and Path(path).is_dir()]
    # addsitedir after the venv's own site-packages: the wheel's v2d comes first, dependencies after.
    lines = [f"import site; site.addsitedir({path!r})" for path in ours]
    (Path(venv_site) / "outer-dependencies.pth").write_text("\n".join(lines) + "\n")
    return folder


def test_the_built_wheel_in_a_fresh_venv_runs_the_demo(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "build")
    venv = fresh_venv(tmp_path / "venv")
    bin_dir = venv / "bin"
    install = [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)]
    subprocess.run(install, check=True, timeout=300)
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}
    env.pop("PYTHONPATH", None)
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import v2d_core, v2d_dagster; print(v2d_core.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    demo = subprocess.run(
        [str(bin_dir / "v2d-demo"), "--videos", "3", "--output_folder", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "success: 3, failed_to_download: 1" in demo.stdout
    assert "v2d-demo: JS runtime: deno " in demo.stderr  # the run's log starts with its tools
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [
        "00000.parquet",
        "00000.tar",
        "00000_stats.json",
    ]
    doctor = subprocess.run(
        [str(bin_dir / "v2d-doctor")], env=env, capture_output=True, text=True, timeout=120
    )
    assert doctor.returncode == 0, doctor.stderr
    assert "JS runtime: deno" in doctor.stdout
