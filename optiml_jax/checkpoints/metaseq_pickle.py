"""Reading metaseq `.pt` files without running code from them.

A metaseq checkpoint is a `torch.save`d dict: `model` (tensors) plus `cfg`, `args`, `extra_state`,
`optimizer_history`, ... Those need more than tensors: `args` is an `argparse.Namespace`, older `cfg`s are
omegaconf `DictConfig`s (whose `model` entry is often a Namespace), and meters' states may hold numpy scalars.
A plain `torch.load` would unpickle whatever the file names, i.e. run any code it carries, so we always load with
`torch.load(weights_only=True)` and an explicit allow-list:

* `argparse.Namespace`, `collections.defaultdict`, numpy scalars/dtypes and the builtin types omegaconf's metadata
  names (`dict`, `list`, `str`, `int`, `float`, `bool`, `typing.Any`): constructing them runs no user code;
* omegaconf's containers and nodes are **not** imported (omegaconf need not be installed): each of their names maps
  to an inert stand-in (`_OmegaConfStandIn`) that only records the pickled state, and `plain(value)` turns it
  into the dicts/lists/values the config held.

Anything else (a class from metaseq, a function, ...) is refused with `UnsafePickleError`, one line naming the file
and the type; `trust_pickle=True` (`--trust_pickle`) loads it with full pickle instead, for files the user trusts.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import typing
from typing import Any

# omegaconf 2.x names a pickled config can hold (containers, leaf nodes, their metadata dataclasses).
OMEGACONF_TYPES = (
    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata", "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode", "omegaconf.nodes.StringNode", "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode", "omegaconf.nodes.BooleanNode", "omegaconf.nodes.BytesNode",
    "omegaconf.nodes.PathNode", "omegaconf.nodes.EnumNode", "omegaconf.nodes.ValueNode",
    "omegaconf.nodes.UnionNode", "omegaconf.base.UnionNode",
)


class UnsafePickleError(ValueError):
    """A checkpoint needs a type outside the allow-list (names the file and the type)."""


class UnreadableCheckpointError(ValueError):
    """A file torch cannot read at all (truncated, not a torch.save file); names the file."""


class _OmegaConfStandIn:
    """Holds the pickled state of an omegaconf object without importing or running omegaconf."""

    omegaconf_type = "?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state or {})


def _stand_in(full_name: str) -> type:
    return type(full_name.rsplit(".", 1)[1], (_OmegaConfStandIn,), {"omegaconf_type": full_name})


_STAND_INS = {name: _stand_in(name) for name in OMEGACONF_TYPES}


def _safe_globals() -> list:
    import numpy as np

    allowed: list = [argparse.Namespace, collections.defaultdict, (typing.Any, "typing.Any")]
    allowed += [(t, f"builtins.{t.__name__}") for t in (dict, list, tuple, str, int, float, bool, bytes)]
    allowed += [(cls, name) for name, cls in _STAND_INS.items()]
    scalar = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((scalar, f"{module}.scalar"))
    allowed.append((np.dtype, "numpy.dtype"))
    allowed += [(type(np.dtype(t)), f"numpy.dtypes.{type(np.dtype(t)).__name__}")
                for t in ("float16", "float32", "float64", "int32", "int64", "bool")]
    return allowed


ALLOWED_DESCRIPTION = ("tensors, argparse.Namespace, omegaconf containers (read as plain data, omegaconf is never "
                       "imported), numpy scalars")
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def safe_torch_load(path: str | os.PathLike, *, trust_pickle: bool = False, mmap: bool = True) -> tuple[Any, bool]:
    """(`torch.load` of a metaseq file, memory-mapped?): tensors memory-mapped where the format allows (zip files),
    every other type from the allow-list above. `UnsafePickleError` names the first type outside it (unless
    `trust_pickle`); `UnreadableCheckpointError` is a file torch cannot read at all."""
    import pickle

    import torch

    def load(use_mmap: bool):
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False, mmap=use_mmap)
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)

    try:
        try:
            return load(mmap), mmap
        except RuntimeError as e:  # legacy (non-zip) serialisation cannot be memory-mapped
            if mmap and "mmap" in str(e).lower():
                return load(False), False
            raise
    except pickle.UnpicklingError as e:
        message = str(e)
        found = _GLOBAL_RE.search(message)
        refusal = next((ln.strip() for ln in message.splitlines()
                        if "Can only" in ln or "unrecognized function" in ln), None)
        if trust_pickle or not (found or refusal):
            first = next((ln.strip() for ln in reversed(message.splitlines()) if ln.strip()), type(e).__name__)
            raise UnreadableCheckpointError(f"{path}: not a torch checkpoint torch can read ({first[:200]})") from e
        what = f"the type {found.group(1)}" if found else refusal[:200]
        raise UnsafePickleError(
            f"{path}: refused to unpickle: it needs {what}, which is not on the allow-list ({ALLOWED_DESCRIPTION}); "
            "if you trust this file, convert it with `python -m optiml_jax.convert metaseq-to-orbax --trust_pickle` "
            "(full pickle: runs code the file names)") from e
    except ModuleNotFoundError as e:  # only with trust_pickle: the file names a module this environment lacks
        raise UnsafePickleError(f"{path}: --trust_pickle needs the module {e.name!r} this file pickles, which is "
                                "not installed (without --trust_pickle omegaconf configs are read as plain data)") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError)):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UnreadableCheckpointError(f"{path}: not a torch checkpoint torch can read ({first[:200]})") from e


def refusal_reason(e: BaseException) -> str:
    """What torch's weights-only unpickler refused, in a few words (the type it names, else its last line)."""
    message = str(e)
    found = _GLOBAL_RE.search(message)
    if found:
        return f"it needs the type {found.group(1)}"
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Can only" in ln or "unrecognized" in ln or "Unsupported" in ln]
    return (useful or lines or [type(e).__name__])[-1][:200]


def plain(value: Any) -> Any:
    """Plain Python data from what `safe_torch_load` returned: omegaconf stand-ins -> dict / list / value,
    Namespace -> dict, OrderedDict -> dict (tensors are left as they are)."""
    if isinstance(value, _OmegaConfStandIn):
        name = value.omegaconf_type
        content = value.__dict__.get("_content", value.__dict__.get("_val"))
        if name.endswith("DictConfig"):
            return {plain(k): plain(v) for k, v in content.items()} if isinstance(content, dict) else None
        if name.endswith("ListConfig"):
            return [plain(v) for v in content] if isinstance(content, (list, tuple)) else None
        return plain(content)
    if isinstance(value, argparse.Namespace):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value) if isinstance(value, list) else tuple(plain(v) for v in value)
    return value
