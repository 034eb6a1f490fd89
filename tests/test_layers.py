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


# ---------------------------------------------------------------- the contract sees everything
def _contract_layers() -> list[str]:
    """The module names the layers contract lists (one per `|`-separated entry)."""
    lines = CONTRACT.read_text().split("layers =", 1)[1].splitlines()[1:]
    names = []
    for line in lines:
        if not line.startswith("    ") or line.strip().startswith("#"):
            break
        names += [n.strip() for n in line.split("|")]
    return names


def test_every_module_of_the_package_is_in_a_layer():
    listed = set(_contract_layers())
    top_level = {f"optiml_jax.{p.stem}" for p in (REPO / "optiml_jax").glob("*.py") if p.stem != "__init__"}
    top_level |= {f"optiml_jax.{p.parent.name}" for p in (REPO / "optiml_jax").glob("*/__init__.py")}
    assert top_level - listed == set(), "add these to .importlinter's layers"
    assert listed - top_level == set(), "the contract names modules that do not exist"


def _module_names() -> set[str]:
    root = REPO / "optiml_jax"
    names = {".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__") for p in root.rglob("*.py")}
    return names - {"optiml_jax"}  # the package's own name is a name, not a deferred import


def deferred_import_findings(source: str, filename: str, modules: set[str]) -> list[str]:
    """What breaks the deferred-import rule (optiml_jax/lazy_imports.py) in one module's source: a call of
    importlib.import_module / __import__, or a string literal naming one of our modules (a deferred import's
    target) that the same module does not also import statically (e.g. under TYPE_CHECKING)."""
    import ast

    tree = ast.parse(source)
    docstrings, subprocess_args, imported = set(), set(), set()
    findings = []
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            docstrings.add(id(body[0].value))
        if isinstance(node, (ast.List, ast.Tuple)):  # [sys.executable, "-m", "optiml_jax.tasks", ...]: a process
            for a, b in zip(node.elts, node.elts[1:]):
                if isinstance(a, ast.Constant) and a.value == "-m":
                    subprocess_args.add(id(b))
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported |= {f"{node.module}.{a.name}" for a in node.names}
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name in ("import_module", "__import__"):
                findings.append(f"{filename}:{node.lineno}: {name}() outside optiml_jax/lazy_imports.py")
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | subprocess_args:
            target = node.value.split(":")[0]
            if target in modules and target not in imported:
                findings.append(f"{filename}:{node.lineno}: {node.value!r} is imported by name but not mirrored "
                                "under `if TYPE_CHECKING:`, so the layer contract cannot see it")
    return findings


def test_deferred_imports_are_visible_to_the_contract():
    modules = _module_names()
    findings = []
    for path in sorted((REPO / "optiml_jax").rglob("*.py")):
        if path.name == "lazy_imports.py":
            continue
        findings += deferred_import_findings(path.read_text(), str(path.relative_to(REPO)), modules)
    assert findings == []


def test_the_deferred_import_scan_finds_a_hidden_import():
    modules = {"optiml_jax.training.optimizer", "optiml_jax.models.config"}
    hidden = '_LAZY = {"Adam": "optiml_jax.training.optimizer"}\n'
    assert len(deferred_import_findings(hidden, "m.py", modules)) == 1
    raw = 'import importlib\nimportlib.import_module(name)\n'
    assert "import_module() outside" in deferred_import_findings(raw, "m.py", modules)[0]
    mirrored = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import optiml_jax.training.optimizer\n" + hidden
    assert deferred_import_findings(mirrored, "m.py", modules) == []


def test_a_deferred_upward_import_breaks_the_contract(tmp_path):
    """Mirrored under TYPE_CHECKING (as the rule asks), a deferred upward import is an upward import."""
    root = _copy_package(tmp_path)
    path = root / "optiml_jax/models/config.py"
    path.write_text(path.read_text() + '\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n'
                    '    import optiml_jax.training.optimizer\n_LAZY = {"x": "optiml_jax.training.optimizer"}\n')
    out = _lint(root)
    assert out.returncode != 0 and "Layers point down BROKEN" in out.stdout
