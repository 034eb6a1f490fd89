"""Attention backend registry: the model calls one function, gin picks the implementation.

Backends register a callable with the reference signature for self-attention
(`fn(q, k, v, segment_ids, *, causal, sm_scale, block_sizes)`). Decoding against a KV cache
(`kv_segment_ids` / `query_offset` given) always uses the reference path: it is one query row per
step, where a fused kernel buys nothing.
"""

from __future__ import annotations

from typing import Callable, Protocol

import jax

from optiml_jax.kernels.reference import reference_attention
from optiml_jax.lazy_imports import import_deferred


class AttentionFn(Protocol):
    def __call__(self, q, k, v, segment_ids, *, causal: bool, sm_scale: float | None, block_sizes) -> jax.Array: ...


_BACKENDS: dict[str, AttentionFn] = {}
_LAZY: dict[str, str] = {}  # name -> module that registers it on import


def register_backend(name: str, fn: AttentionFn) -> None:
    _BACKENDS[name] = fn


def register_lazy_backend(name: str, module: str) -> None:
    """Declare that importing `module` registers backend `name` (keeps heavy kernels off the import path)."""
    _LAZY[name] = module


def available_backends() -> list[str]:
    return sorted(set(_BACKENDS) | set(_LAZY) | {"auto"})


def resolve_backend(name: str) -> str:
    """Map 'auto' to a concrete backend for the default device platform."""
    if name != "auto":
        return name
    platform = jax.default_backend()
    if platform in ("gpu", "cuda", "rocm", "tpu") and ("pallas" in _BACKENDS or "pallas" in _LAZY):
        return "pallas"
    if platform == "cpu" and ("xla" in _BACKENDS or "xla" in _LAZY):
        return "xla"  # CPU-tuned blocked attention (kernels/xla_attention.py)
    return "reference"


def get_backend(name: str) -> AttentionFn:
    name = resolve_backend(name)
    if name not in _BACKENDS and name in _LAZY:
        import_deferred(_LAZY[name])  # declared by register_lazy_backend's caller
    if name not in _BACKENDS:
        raise ValueError(f"Unknown attention backend {name!r}; available: {available_backends()}")
    return _BACKENDS[name]


def _reference_backend(q, k, v, segment_ids, *, causal, sm_scale, block_sizes=None):
    del block_sizes
    return reference_attention(q, k, v, segment_ids, causal=causal, sm_scale=sm_scale)


register_backend("reference", _reference_backend)


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segment_ids: jax.Array | None = None,
    *,
    kv_segment_ids: jax.Array | None = None,
    query_offset: jax.Array | int = 0,
    causal: bool = True,
    sm_scale: float | None = None,
    backend: str = "reference",
    block_sizes=None,
) -> jax.Array:
    """Attention in the model's layout: q/k/v [batch, length, heads, head_dim].

    See `reference.reference_attention` for the masking semantics every backend implements.
    """
    if kv_segment_ids is not None or k.shape[1] != q.shape[1]:
        return reference_attention(
            q, k, v, segment_ids, kv_segment_ids=kv_segment_ids, causal=causal, sm_scale=sm_scale,
            query_offset=query_offset,
        )
    fn: Callable = get_backend(backend)
    return fn(q, k, v, segment_ids, causal=causal, sm_scale=sm_scale, block_sizes=block_sizes)
