"""Peer attention backends from JAX itself: 'splash' (bundled TPU splash attention) and 'cudnn'.

They exist to compare against (tests, benchmarks) and as fallbacks; both register on import of this
module (`optiml_jax.kernels` declares them lazily).

* 'splash': `jax.experimental.pallas.ops.tpu.splash_attention.make_splash_mha` with a static `CausalMask`
  and `SegmentIds`. Its block sparsity comes from the static mask only, so packed rows still pay the full
  causal triangle. Splash masks by segment equality alone, so padding (segment 0) queries attend padding
  keys; their outputs are zeroed here, which also zeroes every gradient that would flow through them.
  Lengths are padded to a multiple of 128 (its block constraint). Interpret mode on CPU. Grouped-query k/v
  (fewer heads than q) are repeated to q's heads first: this peer is for comparisons, not for speed.
* 'cudnn': `jax.nn.dot_product_attention(implementation='cudnn')`; it has no segment-id argument, so it
  accepts `segment_ids=None` only and raises otherwise (silently dropping them leaks across examples).
  It takes grouped-query k/v (fewer heads than q) as they are.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from optiml_jax.kernels.backends import register_backend

SPLASH_LANES = 128


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


@functools.lru_cache(maxsize=32)
def _splash_kernel(length: int, heads: int, causal: bool, block: int, interpret: bool):
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    base = masks.CausalMask((length, length)) if causal else masks.FullMask((length, length))
    mask = masks.MultiHeadMask([base] * heads)
    sizes = splash.BlockSizes(
        block_q=block, block_kv=block, block_kv_compute=block,
        block_q_dkv=block, block_kv_dkv=block, block_kv_dkv_compute=block,
        block_q_dq=block, block_kv_dq=block,
    )
    return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def splash_attention(q, k, v, segment_ids=None, *, causal=True, sm_scale=None, block_sizes=None, interpret=None):
    """JAX's splash attention in the model layout [B, T, H, D], with the project's padding semantics."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash

    batch, length, heads, head_dim = q.shape
    if k.shape[2] != heads:
        from optiml_jax.kernels.reference import kv_group_size

        group = kv_group_size(heads, k.shape[2])
        k, v = (jnp.repeat(x, group, axis=2) for x in (k, v))
    if interpret is None:
        interpret = jax.default_backend() != "tpu"
    padded = _round_up(length, SPLASH_LANES)
    block = 512 if padded % 512 == 0 else (256 if padded % 256 == 0 else SPLASH_LANES)
    if block_sizes is not None:
        requested = block_sizes[0] if isinstance(block_sizes, (tuple, list)) else getattr(block_sizes, "block_q", 0)
        if requested and requested % SPLASH_LANES == 0 and padded % requested == 0:
            block = requested
    seg = jnp.ones((batch, length), jnp.int32) if segment_ids is None else segment_ids.astype(jnp.int32)
    scale = head_dim**-0.5 if sm_scale is None else sm_scale
    qs = q * jnp.asarray(scale, q.dtype)
    pad = padded - length
    if pad:
        qs, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (qs, k, v))
        seg = jnp.pad(seg, ((0, 0), (0, pad)))
    kernel = _splash_kernel(padded, heads, bool(causal), block, bool(interpret))

    def one_row(qr, kr, vr, sr):  # [T, H, D] -> kernel layout [H, T, D]
        out = kernel(*(jnp.swapaxes(x, 0, 1) for x in (qr, kr, vr)), segment_ids=splash.SegmentIds(q=sr, kv=sr))
        return jnp.swapaxes(out, 0, 1)

    out = jax.vmap(one_row)(qs, k, v, seg)[:, :length]
    valid = (seg[:, :length] != 0)[:, :, None, None]
    return jnp.where(valid, out, 0).astype(q.dtype)


def cudnn_attention(q, k, v, segment_ids=None, *, causal=True, sm_scale=None, block_sizes=None):
    """cuDNN fused attention via `jax.nn.dot_product_attention`; no segment ids (see module docstring)."""
    del block_sizes
    if segment_ids is not None:
        raise ValueError(
            "attention backend 'cudnn' cannot mask packed segments (jax.nn.dot_product_attention has no "
            "segment-id argument); use backend 'pallas' for packed batches or pass segment_ids=None"
        )
    return jax.nn.dot_product_attention(q, k, v, scale=sm_scale, is_causal=causal, implementation="cudnn")


# Both take the registry's signature as they are.
register_backend("splash", splash_attention)
register_backend("cudnn", cudnn_attention)
