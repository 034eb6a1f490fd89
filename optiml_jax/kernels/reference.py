"""Pure-JAX attention: the numerical source of truth for every other backend.

Semantics shared by all backends (document attention masking, paper section 3.2):
query i attends key j iff both carry the same non-zero segment id and, when causal, j <= i.
Segment id 0 marks padding: padding keys are never attended and padding queries output zeros
(a fully masked row yields 0, not NaN and not a uniform average).

Grouped-query attention (GQA/MQA): k and v may carry fewer heads than q (`num_kv_heads` dividing
`num_heads`); query head h reads key/value head h // (num_heads // num_kv_heads), Hugging Face's
`repeat_kv` order. No backend materialises the repeated keys and values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def attention_mask(
    q_segment_ids: jax.Array,
    kv_segment_ids: jax.Array,
    *,
    causal: bool,
    query_offset: jax.Array | int = 0,
) -> jax.Array:
    """Boolean [batch, q_len, kv_len] mask: True where a query may attend a key.

    `query_offset` is the index (in key coordinates) of the first query; it is non-zero when
    queries are the newest tokens appended to a KV cache.
    """
    same = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    valid = (q_segment_ids[:, :, None] != 0) & (kv_segment_ids[:, None, :] != 0)
    mask = same & valid
    if causal:
        q_len, kv_len = q_segment_ids.shape[1], kv_segment_ids.shape[1]
        q_idx = jnp.arange(q_len)[:, None] + jnp.asarray(query_offset)
        kv_idx = jnp.arange(kv_len)[None, :]
        mask = mask & (kv_idx <= q_idx)[None]
    return mask


def kv_group_size(q_heads: int, kv_heads: int) -> int:
    """Query heads per key/value head; raises unless `kv_heads` divides `q_heads`."""
    if kv_heads < 1 or q_heads % kv_heads:
        raise ValueError(f"attention: {q_heads} query heads are not a multiple of {kv_heads} key/value heads "
                         "(grouped-query attention needs num_heads % num_kv_heads == 0)")
    return q_heads // kv_heads


def masked_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the last axis where `mask` is True; rows with nothing to attend give zeros, not NaN."""
    logits = jnp.where(mask, logits, -jnp.inf)
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    row_max = jnp.where(jnp.isfinite(row_max), row_max, 0.0)
    weights = jnp.exp(logits - row_max)
    denom = jnp.sum(weights, axis=-1, keepdims=True)
    return weights / jnp.where(denom == 0, 1.0, denom)


def reference_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segment_ids: jax.Array | None = None,
    *,
    kv_segment_ids: jax.Array | None = None,
    causal: bool = True,
    sm_scale: float | None = None,
    query_offset: jax.Array | int = 0,
) -> jax.Array:
    """Masked softmax attention. q [B, Lq, H, D], k/v [B, Lk, KVH, D] -> [B, Lq, H, D] (KVH divides H).

    `segment_ids` [B, Lq] labels the queries (and the keys too when `kv_segment_ids` is None);
    None means one segment covering every position. Softmax runs in float32.
    """
    batch, q_len, heads, head_dim = q.shape
    group = kv_group_size(heads, k.shape[2])
    kv_len = k.shape[1]
    if sm_scale is None:
        sm_scale = head_dim**-0.5
    if segment_ids is None:
        segment_ids = jnp.ones((batch, q_len), jnp.int32)
    if kv_segment_ids is None:
        if kv_len != q_len:
            raise ValueError("kv_segment_ids is required when keys and queries differ in length")
        kv_segment_ids = segment_ids
    mask = attention_mask(segment_ids, kv_segment_ids, causal=causal, query_offset=query_offset)
    if group == 1:
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * sm_scale
        probs = masked_softmax(logits, mask[:, None])
        out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
        return out.astype(q.dtype)
    # GQA: query heads as [kv_head, group]; each group reads its key/value head as is.
    qg = q.reshape(batch, q_len, heads // group, group, head_dim)
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", qg, k, preferred_element_type=jnp.float32) * sm_scale
    probs = masked_softmax(logits, mask[:, None, None])
    out = jnp.einsum("bhgqk,bkhd->bqhgd", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return out.reshape(batch, q_len, heads, head_dim).astype(q.dtype)
