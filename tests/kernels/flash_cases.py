"""What the kernel tests share: packed segment ids, random q/k/v (grouped-query when `kv_heads` is given), the
outputs and gradients of an attention function, and the closeness check against an oracle."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def packed_segment_ids(rows: list[list[int]], length: int) -> jnp.ndarray:
    """One row per list of example lengths, packed as 1,1,..,2,2,..; the rest of the row is padding (0)."""
    out = np.zeros((len(rows), length), np.int32)
    for r, lengths in enumerate(rows):
        start = 0
        for seg_id, n in enumerate(lengths, start=1):
            out[r, start:start + n] = seg_id
            start += n
        assert start <= length, (lengths, length)
    return jnp.asarray(out)


def random_qkv(key, batch, length, heads, head_dim, dtype=jnp.float32, *, kv_heads=None):
    """q and the output cotangent [batch, length, heads, head_dim], k and v with `kv_heads` heads (default: heads)."""
    kq, kk, kv, kd = jax.random.split(key, 4)
    shape = (batch, length, heads, head_dim)
    kv_shape = (batch, length, heads if kv_heads is None else kv_heads, head_dim)
    q, do = (jax.random.normal(x, shape, jnp.float32).astype(dtype) for x in (kq, kd))
    k, v = (jax.random.normal(x, kv_shape, jnp.float32).astype(dtype) for x in (kk, kv))
    return q, k, v, do


def vjp_outputs(fn, q, k, v, do):
    """(fn(q, k, v), its gradients w.r.t. q, k, v for the output cotangent `do`)."""
    out, pullback = jax.vjp(fn, q, k, v)
    return out, pullback(do)


def check_close(actual, expected, dtype, atol):
    """Same shape, finite, and within `atol` (float32) or 2% of the largest magnitude (bfloat16)."""
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all()
    if dtype == jnp.bfloat16:
        rel = np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-6)
        assert rel <= 2e-2, rel
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=atol)


def dense_block_mask(segment_ids, block_q: int, block_k: int, *, causal: bool = True) -> np.ndarray:
    """[B, nq, nk] bool from the dense reference mask: does any query of the block attend any key?"""
    from optiml_jax.kernels import attention_mask

    seg = np.asarray(segment_ids)
    batch, length = seg.shape
    pad = (-length) % np.lcm(block_q, block_k)
    seg = np.pad(seg, ((0, 0), (0, pad)))
    mask = np.asarray(attention_mask(jnp.asarray(seg), jnp.asarray(seg), causal=causal))
    t = seg.shape[1]
    return mask.reshape(batch, t // block_q, block_q, t // block_k, block_k).any(axis=(2, 4))
