"""Attention of new query tokens against a KV cache stored heads-major, [batch, heads, cache_len, head_dim].

Why a layout of its own: with caches in the model's [batch, length, heads, head_dim] layout, the reference
einsums ("bqhd,bkhd->bhqk", "bhqk,bkhd->bqhd") make XLA transpose the whole key and value caches to put
batch and heads first, on every decode step. On CPU those copies were a third of a 125m decode step (24
transposes of 3 MB per step at batch 8). Stored heads-major, the caches feed both batched matmuls as they
are; only the new tokens' q/k/v (one position per decode step) are transposed.

Same masking semantics as `reference.reference_attention`: a query attends a cached key iff both carry the
same non-zero segment id and the key's slot is <= the query's (`query_offset` = slot of the first query);
padding queries output zeros.

Grouped-query attention: the caches hold only the `num_kv_heads` key/value heads ([B, KVH, Lk, D]);
the query heads are grouped as [KVH, H // KVH] against them, never repeating the cache.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from optiml_jax.kernels.reference import attention_mask, kv_group_size, masked_softmax


def to_cache_layout(x: jax.Array) -> jax.Array:
    """[batch, length, heads, head_dim] -> [batch, heads, length, head_dim]."""
    return jnp.swapaxes(x, 1, 2)


def cached_attention(
    q: jax.Array,
    k_cache: jax.Array,
    v_cache: jax.Array,
    segment_ids: jax.Array,
    kv_segment_ids: jax.Array,
    *,
    causal: bool = True,
    sm_scale: float | None = None,
    query_offset: jax.Array | int = 0,
) -> jax.Array:
    """q [B, Lq, H, D] against caches [B, KVH, Lk, D] (KVH divides H) -> [B, Lq, H, D]; softmax in float32."""
    batch, q_len, heads, head_dim = q.shape
    group = kv_group_size(heads, k_cache.shape[1])
    if sm_scale is None:
        sm_scale = head_dim**-0.5
    mask = attention_mask(segment_ids, kv_segment_ids, causal=causal, query_offset=query_offset)  # [B, Lq, Lk]
    if group > 1:
        qg = to_cache_layout(q).reshape(batch, heads // group, group, q_len, head_dim)
        logits = jnp.einsum("bhgqd,bhkd->bhgqk", qg, k_cache, preferred_element_type=jnp.float32)
        probs = masked_softmax(logits * sm_scale, mask[:, None, None])
        out = jnp.einsum("bhgqk,bhkd->bhgqd", probs.astype(v_cache.dtype), v_cache,
                         preferred_element_type=jnp.float32)
        return to_cache_layout(out.reshape(batch, heads, q_len, head_dim)).astype(q.dtype)
    logits = jnp.einsum("bhqd,bhkd->bhqk", to_cache_layout(q), k_cache, preferred_element_type=jnp.float32)
    probs = masked_softmax(logits * sm_scale, mask[:, None])
    out = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(v_cache.dtype), v_cache, preferred_element_type=jnp.float32)
    return to_cache_layout(out).astype(q.dtype)
