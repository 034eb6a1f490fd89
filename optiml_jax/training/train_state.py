"""Train state (step, float32 params, optimizer state) and its sharded initialisation.

The state holds no PRNG key: dropout keys are `fold_in(key(seed), step)`, so the step alone (stored in
every checkpoint) fixes every later random draw, which is what makes resume exact.

Shardings come from the model's logical axis names: the state is built once abstractly with the
`nn.Partitioned` boxes kept (`jax.eval_shape`), `optax` state mirrors the boxes, `nn.get_partition_spec`
reads off one logical spec per leaf, and the partitioner maps those to mesh shardings. Initialisation
then runs under `jax.jit(out_shardings=...)`, so no host ever materialises the full state.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optiml_jax.models import ModelConfig, model_for, to_layout
from optiml_jax.training.partitioning import Partitioner


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any


def _boxed_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    params = model.init(rng, jnp.ones((1, 8), jnp.int32))["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def state_logical_specs(config: ModelConfig, tx: optax.GradientTransformation) -> Any:
    """TrainState-shaped tree of logical PartitionSpecs (optimizer moments follow their parameters)."""
    boxed = jax.eval_shape(lambda: _boxed_state(model_for(config), tx, jax.random.key(0)))
    return nn.get_partition_spec(boxed)


def state_shardings(config: ModelConfig, tx: optax.GradientTransformation, partitioner: Partitioner) -> Any:
    return partitioner.tree_shardings(state_logical_specs(config, tx))


def abstract_state(config: ModelConfig, tx: optax.GradientTransformation, partitioner: Partitioner) -> Any:
    """ShapeDtypeStructs carrying target shardings: the restore target for Orbax (any mesh)."""
    shapes = jax.eval_shape(lambda: nn.unbox(_boxed_state(model_for(config), tx, jax.random.key(0))))
    shardings = state_shardings(config, tx, partitioner)
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings)


def mesh_misfits(config: ModelConfig, tx: optax.GradientTransformation, partitioner: Partitioner) -> list[str]:
    """Parameters whose shape the mesh cannot split evenly under the rules ('decoder/...: axis 0 (heads, size 4)
    over tensor=3'), first the distinct (logical axis, size, mesh axes) cases.

    Why: JAX refuses such a sharding only when an array is placed; at restore time that surfaced as a checkpoint
    that "cannot be restored" and healthy checkpoints were set aside as damaged. Checked before anything is read
    or written, it is the configuration error it is."""
    boxed = jax.eval_shape(lambda: _boxed_state(model_for(config), tx, jax.random.key(0))).params
    logical = nn.get_partition_spec(boxed)
    shapes = nn.unbox(boxed)
    seen, out = set(), []
    flat, _ = jax.tree_util.tree_flatten_with_path(shapes)
    specs = jax.tree.leaves(logical, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec) or x is None)
    for (path, leaf), spec in zip(flat, specs):
        if spec is None:
            continue
        mesh_spec = partitioner.sharding(spec).spec
        for axis, (name, mesh_axes) in enumerate(zip(tuple(spec), tuple(mesh_spec))):
            axes = () if mesh_axes is None else (mesh_axes if isinstance(mesh_axes, tuple) else (mesh_axes,))
            ways = int(np.prod([partitioner.mesh.shape[a] for a in axes])) if axes else 1
            size = leaf.shape[axis]
            if size % ways and (name, size, axes) not in seen:
                seen.add((name, size, axes))
                where = " x ".join(f"{a}={partitioner.mesh.shape[a]}" for a in axes)
                out.append(f"{jax.tree_util.keystr(path, simple=True, separator='/')}: axis {axis} ({name}, size "
                           f"{size}) over {where}")
    return out


def init_state(config: ModelConfig, tx: optax.GradientTransformation, partitioner: Partitioner, seed: int) -> TrainState:
    """Randomly initialised state, created directly in its sharded layout."""
    model = model_for(config)
    shardings = state_shardings(config, tx, partitioner)
    init = partitioner.jit(lambda rng: nn.unbox(_boxed_state(model, tx, rng)), in_shardings=partitioner.replicated,
                           out_shardings=shardings, constrain_activations=False)
    return init(jax.random.key(seed))


def _place(x: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    """Host array (identical on every process) -> global array; works multi-process too. An array already placed
    with `sharding` (a streamed load, `load_metaseq(target=...)`) is kept as it is: no host round trip."""
    if isinstance(x, jax.Array) and x.sharding == sharding and x.dtype == np.float32:
        return x
    host = np.asarray(x, np.float32)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def state_from_params(config: ModelConfig, tx: optax.GradientTransformation, partitioner: Partitioner,
                      params: Any) -> TrainState:
    """Fresh optimizer state around given parameters (fine-tuning start), placed with the state's shardings.

    `params` may be host numpy arrays in either layer layout (converted to the config's layout), or jax arrays
    already placed with the state's shardings in that layout (kept on their devices).
    """
    shardings = state_shardings(config, tx, partitioner)
    params = to_layout(params, config.scan_layers)
    params = jax.tree.map(_place, params, shardings.params)

    def build(p):
        return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=tx.init(p))

    return partitioner.jit(build, in_shardings=(shardings.params,), out_shardings=shardings,
                           constrain_activations=False)(params)
