"""Lets the plain `lm_eval --model optiml_jax ...` command find our backend, with no wrapper.

lm-evaluation-harness 0.4.13 builds its model registry from its own `MODEL_MAPPING` (`lm_eval/models/
__init__.py`) and has no plugin or entry-point discovery, so a third-party backend is normally usable only
from a script that imports it first (`python -m optiml_jax.cli.lm_eval` still works that way).
Its registry does accept lazy "module:Class" placeholders, though. The package installs a one-line
`optiml_jax_lm_eval.pth` (see setup.py) that imports this module at interpreter start-up; it puts a
meta-path finder in place that waits for `lm_eval.models` to be imported and then registers "optiml_jax"
as a placeholder for `optiml_jax.evaluation.lm_eval_adapter:OptimlJaxLM`.

Cost when lm-eval is never imported: this module (stdlib only) and one finder that returns None for every
other import. Nothing of JAX or of the adapter is imported until lm-eval asks for the model by name.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # MODEL_TARGET, which lm-eval imports by name: visible to the layer contract
    from optiml_jax.evaluation import lm_eval_adapter

MODEL_TARGET = "optiml_jax.evaluation.lm_eval_adapter:OptimlJaxLM"
MODEL_NAMES = ("optiml_jax", "optiml-jax")
_WATCHED = "lm_eval.models"


def register_placeholders() -> None:
    """Register our model names in lm-eval's registry as lazy placeholders (idempotent)."""
    from lm_eval.api.registry import model_registry

    for name in MODEL_NAMES:
        if name not in model_registry:
            model_registry.register(name, target=MODEL_TARGET)


class _RegisterAfterLmEvalModels(importlib.abc.MetaPathFinder):
    """Finds `lm_eval.models` like the normal path finder, and registers ours right after it executes."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _WATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module):
            original_exec(module)
            try:
                register_placeholders()
            except Exception as err:  # never break lm-eval itself
                warnings.warn(f"optiml_jax: could not register the lm-eval backend 'optiml_jax': {err!r}")

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    if _WATCHED in sys.modules:  # lm-eval already loaded its models: register now
        register_placeholders()
        return
    if not any(isinstance(f, _RegisterAfterLmEvalModels) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterLmEvalModels())


install()
