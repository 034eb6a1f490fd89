"""Device mesh and logical-axis rules: how the model's logical names land on (data, fsdp, tensor).

T5X's partitioner, reduced to what jax 0.10 needs: the model annotates parameters and activations with
logical names (`embed`, `heads`, `activation_batch`, ...; see docs/ARCHITECTURE.md); a rule list maps
each logical name to mesh axes; `jax.jit` gets `in_shardings`/`out_shardings` derived from those rules,
and the rules plus the mesh are active while tracing so `nn.with_logical_constraint` inside the model
resolves (pjit semantics). Meshes use `AxisType.Auto` so XLA propagates shardings (jax 0.10's default
`Explicit` axes reject a matmul contracting over a sharded axis).

The rule sets below are the defaults of `gin/partitioning/*.gin`, which spell the same lists out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("activation_batch", "activation_length")

LogicalRules = tuple[tuple[str, Any], ...]

_BATCH_RULE = (("activation_batch", ("data", "fsdp")),)
_TENSOR_RULES = (
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("activation_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
)
# FSDP shards each parameter's `embed` (or the 350m `word_embed`) dimension over `fsdp`; flax skips a
# rule whose mesh axis is already taken in the same array, so `word_embed`/`embed` pairs stay legal.
_FSDP_RULES = (("embed", "fsdp"), ("word_embed", "fsdp"), ("abs_pos", None), ("layers", None))

RULE_SETS: dict[str, LogicalRules] = {
    "data_parallel": _BATCH_RULE,
    "fsdp": _BATCH_RULE + _FSDP_RULES,
    "fsdp_tensor": _BATCH_RULE + _TENSOR_RULES + _FSDP_RULES,
    "tensor": _BATCH_RULE + _TENSOR_RULES,
}


def standard_rules(name: str) -> LogicalRules:
    if name not in RULE_SETS:
        raise ValueError(f"Unknown logical axis rule set {name!r}; known: {sorted(RULE_SETS)}")
    return RULE_SETS[name]


def _normalise_rules(rules: Sequence[Sequence[Any]]) -> LogicalRules:
    """Gin hands rules over as lists; flax wants (name, str | tuple | None) pairs."""
    out = []
    for i, rule in enumerate(rules):
        if len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"logical axis rule #{i} {rule!r} is not a (logical_name, mesh_axes) pair")
        name, axes = rule
        if isinstance(axes, list):
            axes = tuple(axes)
        for a in (axes if isinstance(axes, tuple) else (axes,)):
            if a is not None and a not in MESH_AXES:
                raise ValueError(f"logical axis rule {name!r} -> {axes!r} names mesh axis {a!r}; mesh axes are {MESH_AXES}")
        out.append((name, axes))
    return tuple(out)


def make_mesh(mesh_shape: Sequence[int] = (-1, 1, 1), devices: Sequence[Any] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh; one -1 entry takes the remaining devices."""
    devices = list(devices) if devices is not None else jax.devices()
    shape = [int(s) for s in mesh_shape]
    if len(shape) != len(MESH_AXES):
        raise ValueError(f"mesh_shape {tuple(mesh_shape)} must have {len(MESH_AXES)} entries {MESH_AXES}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh_shape {tuple(mesh_shape)}: at most one entry may be -1")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise ValueError(f"mesh_shape {tuple(mesh_shape)} does not divide {len(devices)} devices")
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise ValueError(f"mesh_shape {tuple(shape)} needs {int(np.prod(shape))} devices, have {len(devices)}")
    if devices == jax.devices():
        return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
    return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


@dataclasses.dataclass
class Partitioner:
    """A mesh plus logical rules: turns logical-axis trees into NamedShardings and jits under both."""

    mesh: Mesh
    rules: LogicalRules

    def __post_init__(self):
        self.rules = _normalise_rules(self.rules)

    def sharding(self, logical_spec: PartitionSpec | Sequence[str | None] | None) -> NamedSharding:
        if logical_spec is None:
            return NamedSharding(self.mesh, PartitionSpec())
        mesh_axes = nn.logical_to_mesh_axes(tuple(logical_spec), self.rules)
        return NamedSharding(self.mesh, mesh_axes)

    def tree_shardings(self, logical_tree: Any) -> Any:
        """Map a tree of logical PartitionSpecs (e.g. `nn.get_partition_spec(boxed)`) to NamedShardings."""
        return jax.tree.map(self.sharding, logical_tree, is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)

    @property
    def batch_sharding(self) -> NamedSharding:
        return self.sharding(BATCH_AXES)

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def data_shard_count(self) -> int:
        """How many distinct batch shards the mesh holds (product of the mesh axes the batch is split over)."""
        spec = self.batch_sharding.spec
        axes = spec[0] if len(spec) else None
        axes = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
        return int(np.prod([self.mesh.shape[a] for a in axes])) if axes else 1

    def mesh_axes(self, logical_name: str) -> tuple[str, ...]:
        """The mesh axes a logical axis name maps to under the rules (() = replicated)."""
        spec = nn.logical_to_mesh_axes((logical_name,), self.rules)
        axes = spec[0] if len(spec) else None
        return () if axes is None else (axes if isinstance(axes, tuple) else (axes,))

    def attention_backend_for(self, backend: str) -> str:
        """The backend name the model should use on this mesh.

        A pallas_call is opaque to the SPMD partitioner (it would run replicated), so on a multi-device mesh
        the Pallas kernel is registered once more, wrapped in `shard_map` over the mesh axes that the rules
        give the batch and the heads, under a mesh-specific name; other backends are returned unchanged.
        """
        from optiml_jax.kernels import register_backend, resolve_backend

        if self.mesh.size == 1 or resolve_backend(backend) != "pallas":
            return backend
        from optiml_jax.kernels.pallas_attention import make_sharded_backend

        batch_axes, head_axes = self.mesh_axes("activation_batch"), self.mesh_axes("activation_heads")
        name = f"pallas_sharded[{','.join(batch_axes)}|{','.join(head_axes)}|{id(self.mesh)}]"
        register_backend(name, make_sharded_backend(self.mesh, batch_axes=batch_axes, head_axes=head_axes))
        return name

    def jit(self, fn: Callable, *, in_shardings: Any, out_shardings: Any, donate_argnums=(), static_argnums=(),
            constrain_activations: bool = True):
        """`jax.jit` with explicit shardings, traced with the logical rules (and the mesh) active.

        With the mesh active, the model's `nn.with_logical_constraint` calls pin activation shardings
        (T5X behaviour). `constrain_activations=False` traces without a global mesh, which turns them
        into no-ops (XLA then propagates shardings from the inputs and parameters); outputs are still
        placed by `out_shardings`. Initialisation uses that: it has no activations worth pinning.
        """
        jitted = jax.jit(fn, in_shardings=in_shardings, out_shardings=out_shardings,
                         donate_argnums=donate_argnums, static_argnums=static_argnums)

        def run(method, *args, **kwargs):
            with contextlib.ExitStack() as stack:
                if constrain_activations:
                    stack.enter_context(jax.set_mesh(self.mesh))
                stack.enter_context(nn.logical_axis_rules(self.rules))
                return method(*args, **kwargs)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            return run(jitted, *args, **kwargs)

        call.lower = lambda *args, **kwargs: run(jitted.lower, *args, **kwargs)
        return call


def make_partitioner(
    mesh_shape: Sequence[int] = (-1, 1, 1),
    logical_axis_rules: Sequence[Sequence[Any]] | str = "data_parallel",
    devices: Sequence[Any] | None = None,
) -> Partitioner:
    """Gin entry point: `make_partitioner.mesh_shape` and `make_partitioner.logical_axis_rules`.

    `devices` (default `jax.devices()`): the planner passes the abstract devices of a TPU topology."""
    rules = standard_rules(logical_axis_rules) if isinstance(logical_axis_rules, str) else logical_axis_rules
    return Partitioner(make_mesh(mesh_shape, devices), rules)
