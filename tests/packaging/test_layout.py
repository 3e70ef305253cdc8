"""The layout holds: one top-level name when installed, and the import floors of
pyproject.toml's import-linter contract fail on an import that runs upward or across
the wings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")  # a copy as a clone has it: the links kept as links
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("segstream", "streaming", "training", "serving"):
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    assert (src / "segstream" / "streaming").is_symlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    (path,) = out.glob("segstream-*.whl")
    return path


def test_the_wheel_installs_exactly_one_top_level_name(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    # importable names: everything but the metadata and the console script's bin/
    names = {p.name for p in target.iterdir()
             if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert names == {"segstream"}, names
    assert (target / "bin" / "segstream").is_file()
    # the wings are real files under the one root, not links back into this checkout
    for wing in ("streaming", "training", "serving"):
        folder = target / "segstream" / wing
        assert folder.is_dir() and not folder.is_symlink()
        assert (folder / "__init__.py").is_file()
    with zipfile.ZipFile(wheel) as zf:
        tops = {n.split("/")[0] for n in zf.namelist()}
        assert "segstream/streaming/log4j2.properties" in zf.namelist()  # package data
    assert {t for t in tops if not t.endswith(".dist-info")} == {"segstream"}
    # and the installed copy imports from there, with no checkout on the path
    code = ("import segstream.streaming.job, segstream.serving.app, segstream.training.fit;"
            "print(segstream.streaming.job.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(target)}, check=True)
    assert done.stdout.strip().startswith(str(target))


def _lint_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the package (links followed) with ``line`` added to
    ``module``."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "segstream", copy / "segstream", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    if module:
        path = copy / (module.replace(".", "/") + ".py")
        path.write_text(path.read_text() + f"\n{line}\n")
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=copy,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(copy)})


def test_the_floors_contract_passes_on_the_tree(tmp_path: Path) -> None:
    done = _lint_copy(tmp_path, "", "")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    ("segstream.core.contract", "import segstream.app.cli",
     "segstream.core.contract -> segstream.app.cli"),
    ("segstream.adapters.kafka", "from segstream.streaming import job",
     "segstream.adapters.kafka -> segstream.streaming.job"),
    ("segstream.training.fit", "import segstream.serving.app",
     "segstream.training.fit -> segstream.serving.app"),
])
def test_the_floors_contract_fails_on_a_forbidden_import(tmp_path: Path, module: str,
                                                         line: str, broken: str) -> None:
    done = _lint_copy(tmp_path, module, line)
    assert done.returncode == 1, done.stdout + done.stderr
    assert broken in done.stdout, done.stdout
