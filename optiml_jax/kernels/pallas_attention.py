"""Segment-aware flash attention (Pallas), the 'pallas' attention backend.

`flash_attention(q, k, v, segment_ids)` computes exactly `reference_attention` (same-segment, non-zero
segment, causal; segment-0 queries output zeros) with fused Pallas kernels for the forward pass and for
dq and dk/dv, and skips every (query block, key block) pair in which no query can attend any key —
the lever JAX's bundled kernels lack: a 2048-token row packed with 8 examples needs ~1/8 of the causal
work (see `block_plan`).

Two kernel flavours with identical semantics: `flash_tpu` (Mosaic: scalar-prefetched plan, skipped steps
do no compute and no DMA) and `flash_gpu` (Triton: per-program loop over the visible key-block range).
`backend="auto"` picks by platform. Off-accelerator (CPU) the kernels run in Pallas interpret mode.

Grouped-query attention: k/v may carry `num_kv_heads` dividing q's heads. Both flavours index key/value
head h // group from query head h in their BlockSpecs (no repeated k/v is ever built) and accumulate
dk/dv over the group's query heads; block skipping is unchanged (the plan depends only on segments).

Importing this module registers the 'pallas' backend (`optiml_jax.kernels` declares it lazily).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import numpy as np
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from optiml_jax.kernels import flash_gpu, flash_tpu
from optiml_jax.kernels.backends import register_backend
from optiml_jax.kernels.block_plan import BlockSizes, block_visit_mask
from optiml_jax.kernels.reference import kv_group_size

KERNELS = ("tpu", "gpu")
_MODULES = {"tpu": flash_tpu, "gpu": flash_gpu}


def resolve_kernel(backend: str) -> str:
    """'auto' -> 'tpu' on TPU, 'gpu' on CUDA/ROCm, and 'gpu' on CPU (its interpreted form runs fastest there)."""
    if backend in KERNELS:
        return backend
    if backend != "auto":
        raise ValueError(f"flash_attention backend={backend!r}: expected 'auto', 'tpu' or 'gpu'")
    return "tpu" if jax.default_backend() == "tpu" else "gpu"


@dataclasses.dataclass(frozen=True)
class _Config:
    kernel: str
    causal: bool
    sm_scale: float
    sizes: BlockSizes
    interpret: Any


def _fwd(q, k, v, seg, config: _Config):
    module = _MODULES[config.kernel]
    o, lse, _ = module.forward(
        q, k, v, seg, causal=config.causal, sm_scale=config.sm_scale, sizes=config.sizes,
        interpret=config.interpret,
    )
    return o, (q, k, v, seg, o, lse)


def _bwd(config: _Config, residuals, do):
    q, k, v, seg, o, lse = residuals
    dq, dk, dv = _MODULES[config.kernel].backward(
        q, k, v, seg, o, lse, do, causal=config.causal, sm_scale=config.sm_scale, sizes=config.sizes,
        interpret=config.interpret,
    )
    return dq, dk, dv, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(q, k, v, seg, config: _Config):
    return _fwd(q, k, v, seg, config)[0]


_attention.defvjp(_fwd, _bwd)


def _check_tpu_tiles(sizes: BlockSizes, padded: int) -> None:
    """Mosaic tiling: key tiles are lane-major (multiple of 128 or the whole row), query tiles sublane-major."""
    for name, value, unit in (("block_k", sizes.block_k, 128), ("block_k_bwd", sizes.k_bwd, 128),
                              ("block_q", sizes.block_q, 8), ("block_q_bwd", sizes.q_bwd, 8)):
        if value % unit and value != padded:
            raise ValueError(f"TPU flash attention: {name}={value} must be a multiple of {unit} (attention block_sizes)")


def _prepare(q, k, v, segment_ids, *, causal, sm_scale, block_sizes, interpret, backend):
    """Validate, resolve defaults and pad the length to the block grid. Returns (padded q/k/v/seg, config)."""
    if (q.ndim != 4 or k.ndim != 4 or v.shape != k.shape
            or (k.shape[0], k.shape[1], k.shape[3]) != (q.shape[0], q.shape[1], q.shape[3])):
        raise ValueError(
            f"flash_attention expects q [batch, length, heads, head_dim] and k, v of one shape [batch, length, "
            f"kv_heads, head_dim]; got q{q.shape} k{k.shape} v{v.shape} (cross-attention / KV-cache decoding use "
            "the reference backend)"
        )
    kv_group_size(q.shape[2], k.shape[2])
    batch, length, _, head_dim = q.shape
    if segment_ids is None:
        segment_ids = jnp.ones((batch, length), jnp.int32)
    if segment_ids.shape != (batch, length):
        raise ValueError(f"segment_ids shape {segment_ids.shape} != [batch, length] = {(batch, length)}")
    if not jnp.issubdtype(segment_ids.dtype, jnp.integer):
        raise ValueError(f"segment_ids must be integers, got {segment_ids.dtype}")
    kernel = resolve_kernel(backend)
    if jax.default_backend() == "cpu" and not interpret:
        interpret = True  # compiled Pallas kernels cannot run on CPU
    sizes = BlockSizes.parse(block_sizes).fit(length, power_of_two=kernel == "gpu")
    if kernel == "tpu" and not interpret:
        _check_tpu_tiles(sizes, sizes.padded_length(length))
    padded = sizes.padded_length(length)
    seg = segment_ids.astype(jnp.int32)
    if padded != length:
        pad = padded - length
        q, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (q, k, v))
        seg = jnp.pad(seg, ((0, 0), (0, pad)))  # segment 0: never attended, outputs sliced off
    scale = float(head_dim**-0.5 if sm_scale is None else sm_scale)
    return (q, k, v, seg), _Config(kernel, bool(causal), scale, sizes, interpret)


def flash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segment_ids: jax.Array | None = None,
    *,
    causal: bool = True,
    sm_scale: float | None = None,
    block_sizes=None,
    interpret=False,
    backend: str = "auto",
) -> jax.Array:
    """Segment-aware flash attention. q [batch, length, heads, head_dim], k/v [batch, length, kv_heads, head_dim]
    (kv_heads divides heads; grouped-query attention when smaller) -> q's shape and dtype.

    Args:
      segment_ids: int [batch, length]; 0 marks padding (never attended, outputs zeros). None = one segment.
      block_sizes: None, `BlockSizes`, a dict, or (block_q, block_k[, block_q_bwd, block_k_bwd]).
        Blocks larger than the sequence shrink to fit; any length works (padded internally).
      interpret: run in Pallas interpret mode; forced on CPU. For the TPU kernel a
        `pltpu.InterpretParams(...)` selects the TPU simulator (DMA/OOB checks) instead of the generic one.
      backend: 'auto' | 'tpu' | 'gpu' kernel flavour.
    Differentiable in q, k, v (custom VJP with Pallas dq and dk/dv kernels).
    """
    length = q.shape[1]
    args, config = _prepare(
        q, k, v, segment_ids, causal=causal, sm_scale=sm_scale, block_sizes=block_sizes, interpret=interpret,
        backend=backend,
    )
    return _attention(*args, config)[:, :length]


_PLATFORM_KERNEL = {"cuda": "gpu", "rocm": "gpu", "tpu": "tpu"}


def lower_for_platform(platform: str, q_shape, dtype=jnp.bfloat16, *, causal: bool = True, block_sizes=None,
                       with_grad: bool = True, kv_heads: int | None = None) -> "jax.export.Exported":
    """Lower the compiled (not interpreted) kernels for `platform` ('cuda', 'rocm' or 'tpu') on any host.

    Why: interpret mode runs the kernel's semantics but skips Pallas' Mosaic/Triton lowering, where block
    shapes, tiling and unsupported operations are rejected. This runs that lowering on a CPU machine (the
    test suite does, for every head dimension and dtype), and lets a researcher check a block-size choice
    before launching on a pod. It does not compile to device code (that happens in XLA on the device).
    Returns the `jax.export.Exported` of the forward pass, or of dq/dk/dv when `with_grad`. `kv_heads`
    (default: q's heads) lowers the grouped-query form, k/v of shape [batch, length, kv_heads, head_dim].
    """
    if platform not in _PLATFORM_KERNEL:
        raise ValueError(f"platform={platform!r}: expected one of {sorted(_PLATFORM_KERNEL)}")
    kernel = _PLATFORM_KERNEL[platform]
    batch, length = q_shape[0], q_shape[1]
    q = jax.ShapeDtypeStruct(tuple(q_shape), dtype)
    kv_heads = q_shape[2] if kv_heads is None else kv_heads
    kv_group_size(q_shape[2], kv_heads)
    kv = jax.ShapeDtypeStruct((batch, length, kv_heads, q_shape[3]), dtype)
    seg = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    sizes = BlockSizes.parse(block_sizes).fit(length, power_of_two=kernel == "gpu")
    if kernel == "tpu":
        _check_tpu_tiles(sizes, sizes.padded_length(length))
    config = _Config(kernel, bool(causal), float(q_shape[-1] ** -0.5), sizes, False)
    padded = sizes.padded_length(length)

    def forward(q, k, v, seg):
        pad = ((0, 0), (0, padded - length), (0, 0), (0, 0))
        q, k, v = (jnp.pad(x, pad) for x in (q, k, v))
        return _attention(q, k, v, jnp.pad(seg, ((0, 0), (0, padded - length))), config)[:, :length]

    fn = forward
    if with_grad:
        fn = jax.grad(lambda *a: forward(*a).astype(jnp.float32).sum(), argnums=(0, 1, 2))
    # Pallas' Triton custom call has no export-stability guarantee; we only inspect the lowering, never
    # serialize it, so that check is off.
    checks = [jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
    return jax.export.export(jax.jit(fn), platforms=[platform], disabled_checks=checks)(q, kv, kv, seg)


def block_visits(
    q, k, v, segment_ids=None, *, causal=True, block_sizes=None, interpret=False, backend="auto"
) -> tuple[jax.Array, jax.Array, BlockSizes]:
    """Instrumented forward: (visits [B, H, num_q_blocks], plan [B, num_q_blocks, num_k_blocks], sizes).

    `visits` is counted by the kernel itself (a counter bumped each time it computes a key block);
    `plan` is the block mask it was handed. Used by tests and the benchmark as evidence of skipping.
    """
    args, config = _prepare(
        q, k, v, segment_ids, causal=causal, sm_scale=None, block_sizes=block_sizes, interpret=interpret,
        backend=backend,
    )
    _, _, visits = _MODULES[config.kernel].forward(
        *args, causal=config.causal, sm_scale=config.sm_scale, sizes=config.sizes, interpret=config.interpret,
        count_visits=True,
    )
    plan = block_visit_mask(args[3], config.sizes.block_q, config.sizes.block_k, causal=config.causal)
    return visits, plan, config.sizes


def _present(mesh, axes: Sequence[str], size: int | None = None) -> tuple[str, ...] | None:
    """Mesh axes to split an array dimension of `size` over: those present in the mesh, keeping the longest
    prefix whose total size divides `size` (e.g. the batch-1 trace of `model.init` stays replicated)."""
    kept = tuple(a for a in axes if a in mesh.axis_names)
    if size is not None:
        while kept and size % int(np.prod([mesh.shape[a] for a in kept])):
            kept = kept[:-1]
    return kept or None


def sharded_flash_attention(
    mesh: jax.sharding.Mesh,
    q, k, v, segment_ids=None, *,
    batch_axes: Sequence[str] = ("data",),
    head_axes: Sequence[str] = ("model",),
    **kwargs,
) -> jax.Array:
    """`flash_attention` under `shard_map`: batch split over `batch_axes`, heads over `head_axes`.

    A pallas_call is opaque to the SPMD partitioner (it would be replicated), so under a mesh each device
    runs the kernel on its own batch/head shard. Axis names missing from the mesh are ignored; the length
    axis must not be sharded (attention needs the whole row).

    Grouped-query attention (k/v with fewer heads): query heads are split into contiguous shards and key/value
    heads into as many, so each shard keeps whole groups. When there are fewer key/value heads than head
    shards, each key/value head is repeated only up to the shard count (shard s then holds one copy of key/value
    head s // (shards / kv_heads)); its gradient sums the copies.
    """
    heads, kv_heads = q.shape[2], k.shape[2]
    kv_group_size(heads, kv_heads)
    batch_spec, head_spec = _present(mesh, batch_axes, q.shape[0]), _present(mesh, head_axes, heads)
    if segment_ids is None:
        segment_ids = jnp.ones(q.shape[:2], jnp.int32)
    shards = int(np.prod([mesh.shape[a] for a in head_spec])) if head_spec else 1
    if kv_heads % shards:
        repeat = shards // math.gcd(shards, kv_heads)  # heads % shards == 0, so this keeps groups whole
        k, v = (jnp.repeat(x, repeat, axis=2) for x in (k, v))
    q_spec = P(batch_spec, None, head_spec, None)
    fn = jax.shard_map(
        functools.partial(flash_attention, **kwargs),
        mesh=mesh,
        in_specs=(q_spec, q_spec, q_spec, P(batch_spec, None)),
        out_specs=q_spec,
        check_vma=False,
    )
    return fn(q, k, v, segment_ids)


def make_sharded_backend(mesh, *, batch_axes=("data",), head_axes=("model",)):
    """A backend fn (registry signature) running the kernel per shard of `mesh`; register it with
    `register_backend('pallas', make_sharded_backend(mesh))` once the trainer has built its mesh."""

    def backend(q, k, v, segment_ids, *, causal, sm_scale, block_sizes=None):
        return sharded_flash_attention(
            mesh, q, k, v, segment_ids, batch_axes=batch_axes, head_axes=head_axes,
            causal=causal, sm_scale=sm_scale, block_sizes=block_sizes,
        )

    return backend


register_backend("pallas", flash_attention)  # its signature is the registry's (block_sizes, and defaults beyond)
