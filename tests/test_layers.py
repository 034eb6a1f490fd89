"""The layer contract (.importlinter at the repository root) holds, and it is a real check: the same contract
run over a copy of the package with one deliberately upward import, or one cycle, reports it broken."""

import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CONTRACT = REPO / ".importlinter"


def _lint(package_root: pathlib.Path) -> subprocess.CompletedProcess:
    # grimp locates `optiml_jax` through the import system: put the tree under test first on the path
    env = {"PYTHONPATH": str(package_root), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c;"
                           "sys.exit(c())", "--config", str(CONTRACT), "--no-cache", "--no-logo"],
                          cwd=package_root, env=env, capture_output=True, text=True, timeout=120)


def _copy_package(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(REPO / "optiml_jax", tmp_path / "optiml_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.txt", "*.tsv", "*.gin", "*.md"))
    return tmp_path


def test_the_package_keeps_its_layer_contract():
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in out.stdout


@pytest.mark.parametrize("importer, imported", [
    ("optiml_jax/models/config.py", "optiml_jax.training.optimizer"),  # a model importing the trainer
    ("optiml_jax/tasks/metadata.py", "optiml_jax.data.packing"),       # tasks importing data (the old cycle)
    ("optiml_jax/evaluation/metrics.py", "optiml_jax.cli.gin_setup"),  # library code importing a CLI module
])
def test_an_upward_import_breaks_the_contract(tmp_path, importer, imported):
    root = _copy_package(tmp_path)
    path = root / importer
    path.write_text(path.read_text() + f"\nimport {imported}  # deliberately upward\n")
    out = _lint(root)
    assert out.returncode != 0
    assert "Layers point down BROKEN" in out.stdout
    assert imported in out.stdout and importer[:-3].replace("/", ".") in out.stdout


def test_a_cycle_between_siblings_breaks_the_contract(tmp_path):
    root = _copy_package(tmp_path)
    path = root / "optiml_jax/data/packing.py"  # packing <- stream already; make packing import stream back
    path.write_text(path.read_text() + "\nimport optiml_jax.data.stream  # deliberate cycle\n")
    out = _lint(root)
    assert out.returncode != 0
    assert "No import cycles between sibling modules or packages, at any depth BROKEN" in out.stdout
