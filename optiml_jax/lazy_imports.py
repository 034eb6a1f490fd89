"""The one place this package imports a module by name at run time, so that the layer contract sees every import;
and the module `__getattr__`s for names a module does not define itself (deferred ones, renamed ones).

import-linter (`.importlinter`) reads `import` statements; `importlib.import_module("optiml_jax.x")` is invisible
to it, so a deferred import could point up the layers unnoticed. The rule, checked by `tests/test_layers.py`:
- a module that defers an import of ours (to keep Pallas or SeqIO off a cheap import path) names the target with
  a string literal *and* imports the same module under `if TYPE_CHECKING:` (never executed, but read by the
  contract, which therefore checks the deferred import like any other);
- nothing outside this module calls `importlib.import_module` or `__import__`;
- a user's own module (MIXTURE_OR_TASK_MODULE, `--module_import`) goes through `import_user_module`: it is
  outside the package and has no layer.
Stdlib only: every layer may import it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Callable, Mapping

__all__ = ["import_deferred", "import_user_module", "lazy_attributes", "renamed_attributes"]


def import_deferred(module: str) -> ModuleType:
    """Import `module`, one of ours declared by the caller (a string literal mirrored under TYPE_CHECKING)."""
    if not module.startswith("optiml_jax."):
        raise ValueError(f"import_deferred({module!r}): only the package's own modules are deferred this way")
    return importlib.import_module(module)


def import_user_module(module: str) -> ModuleType:
    """Import a module a user named (task registrations): not ours, so not subject to the layer contract."""
    return importlib.import_module(module)


def lazy_attributes(package: str, namespace: dict[str, Any], table: Mapping[str, str]) -> Callable[[str], Any]:
    """A PEP 562 module `__getattr__` for `package`: attribute `name` comes from module `table[name]` on first
    access and is then cached in the package's `namespace` (its `globals()`)."""

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(import_deferred(table[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def renamed_attributes(module: str, renamed: Mapping[str, str], why: str = "") -> Callable[[str], Any]:
    """A PEP 562 module `__getattr__` for `module`'s names renamed in this release ({old: new}): one release of a
    clear error naming the new name. It raises ImportError, which `from module import old` passes on unchanged
    (an AttributeError there would become a bare "cannot import name")."""

    def __getattr__(name: str) -> Any:
        if name in renamed:
            raise ImportError(f"{module}.{name} was renamed {renamed[name]}{why}: "
                              f"from {module} import {renamed[name]}")
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
