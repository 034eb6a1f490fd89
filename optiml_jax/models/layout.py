"""Convert parameters between the unrolled (`layers_{i}`) and scanned (`layers`, stacked) layouts.

Checkpoints and converters always speak the unrolled layout; a scanned model stacks on load. Both
layouts therefore load the same checkpoints.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np

_LAYER = re.compile(r"^layers_(\d+)$")


def stack_layers(params: Any) -> Any:
    """{'decoder': {'layers_0': t0, 'layers_1': t1, ...}} -> {'decoder': {'layers': stack(t0, t1, ...)}}."""
    decoder = dict(params["decoder"])
    indices = sorted(int(m.group(1)) for k in decoder if (m := _LAYER.match(k)))
    if not indices:
        return params
    if indices != list(range(len(indices))):
        raise ValueError(f"Layer indices are not contiguous from 0: {indices}")
    layers = [decoder.pop(f"layers_{i}") for i in indices]
    xp = np if all(isinstance(x, np.ndarray) for x in jax.tree.leaves(layers)) else jax.numpy
    decoder["layers"] = jax.tree.map(lambda *xs: xp.stack(xs), *layers)
    return {**params, "decoder": decoder}


def unstack_layers(params: Any) -> Any:
    """Inverse of `stack_layers`."""
    decoder = dict(params["decoder"])
    if "layers" not in decoder:
        return params
    stacked = decoder.pop("layers")
    n = jax.tree.leaves(stacked)[0].shape[0]
    for i in range(n):
        decoder[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    return {**params, "decoder": decoder}


def to_layout(params: Any, scanned: bool) -> Any:
    """Return `params` in the layout a model with `scan_layers=scanned` expects."""
    return stack_layers(params) if scanned else unstack_layers(params)
