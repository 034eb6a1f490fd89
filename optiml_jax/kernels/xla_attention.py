"""CPU-tuned attention in plain XLA: the 'xla' backend ('auto' picks it on CPU).

Same semantics as `reference.reference_attention` (the numerical source of truth): query i attends key j
iff both carry the same non-zero segment id and, when causal, j <= i; segment-0 queries output zeros.

Why a second pure-JAX backend: on XLA:CPU the reference formulation is bound by memory traffic, not by
its matmuls. Each [batch, heads, L, L] float32 temporary (50 MB at 4 x 12 x 512^2) is a fresh allocation
above glibc's mmap threshold, so every pass over it pays page faults (~1.6 GB/s measured here versus
~25 GB/s for buffers that stay below the threshold), and autodiff of the reference keeps several of them
alive per layer. This backend changes only the schedule, never the math:
- [B, KVH, L * G, D] layout for q (G query heads per key/value head, as G consecutive rows per position;
  G = 1 without grouped-query attention) against [B, KVH, L, D] keys and values, which are never
  repeated; scale folded into q once. Every einsum, the dk/dv sums over a key/value head's G query heads
  included, then contracts one axis: with a separate G axis those sums contracted two (G, rows), and
  XLA:CPU transposed each probability block to merge them (about 4% of a 125M Llama step);
- query blocks of `block_q` rows: every score/probability temporary is [B, H, block_q, kv_end], small
  enough to be recycled by the allocator; with `causal`, block i only reads keys [0, kv_end_i), which
  skips the upper triangle (about 40% of the score work at L=512, block 128);
- one boolean mask per block, shared by all heads (not a per-head where on -inf);
- a custom VJP that saves only q, k, v, the output and the per-row log-sum-exp, and recomputes the
  probabilities block by block in the backward pass (flash-attention style, no [L, L] residuals).

Fully masked rows: with a finite mask value a segment-0 row gets a uniform (finite) softmax; the row is
then multiplied by its `query_valid` factor (0), so its output and every gradient through it are exactly
0, as in the reference. A row with a non-zero segment always sees at least its own key, so no other row
is ever fully masked.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from optiml_jax.kernels.reference import attention_mask, kv_group_size

DEFAULT_BLOCK_Q = 128
_MASK_VALUE = -1e30  # finite: exp(_MASK_VALUE - row_max) underflows to exactly 0 for any valid row


def _query_blocks(q_len: int, kv_len: int, block_q: int, causal: bool) -> list[tuple[int, int, int]]:
    """(q_start, q_end, kv_end) per query block; causal blocks stop at their last query's key."""
    blocks = []
    for start in range(0, q_len, block_q):
        end = min(start + block_q, q_len)
        blocks.append((start, end, min(end, kv_len) if causal else kv_len))
    return blocks


def _block_scores(q, k, mask, rows, kv_end):
    """Masked scores of query rows [r0, r1) against keys [0, kv_end): [B, KVH, rows, kv_end] float32."""
    r0, r1 = rows
    s = jnp.einsum("bhrd,bhkd->bhrk", q[:, :, r0:r1], k[:, :, :kv_end], preferred_element_type=jnp.float32)
    return jnp.where(mask[:, None, r0:r1, :kv_end], s, _MASK_VALUE)


def _row_blocks(blocks, group):
    """Query blocks (q_start, q_end, kv_end) in query-row units: G rows per query position."""
    return [((start * group, end * group), kv_end) for start, end, kv_end in blocks]


def _forward(q, k, v, mask, query_valid, blocks, group):
    outs, lses = [], []
    for (r0, r1), kv_end in _row_blocks(blocks, group):
        s = _block_scores(q, k, mask, (r0, r1), kv_end)
        row_max = jnp.max(s, axis=-1, keepdims=True)
        p = jnp.exp(s - row_max)
        denom = jnp.sum(p, axis=-1, keepdims=True)
        o = jnp.einsum("bhrk,bhkd->bhrd", p, v[:, :, :kv_end], preferred_element_type=jnp.float32)
        outs.append(o * (query_valid[:, :, r0:r1] / denom))
        lses.append(row_max + jnp.log(denom))
    return jnp.concatenate(outs, axis=2), jnp.concatenate(lses, axis=2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _attention_rows(q, k, v, mask, query_valid, blocks, group):
    """q (already scaled) [B, KVH, L * G, D] (row = position * G + group member), k/v [B, KVH, L, D],
    float32; mask [B, L * G, Lk] bool (per row); query_valid [B, 1, L * G, 1]."""
    return _forward(q, k, v, mask, query_valid, blocks, group)[0]


def _attention_fwd(q, k, v, mask, query_valid, blocks, group):
    out, lse = _forward(q, k, v, mask, query_valid, blocks, group)
    return out, (q, k, v, mask, query_valid, out, lse)


def _attention_bwd(blocks, group, residuals, d_out):
    q, k, v, mask, query_valid, out, lse = residuals
    # delta_i = sum_d dO_id * O_id = sum_j P_ij dP_ij: the softmax-Jacobian row term.
    delta = jnp.sum(d_out * out, axis=-1, keepdims=True)
    dq_blocks = []
    dk = jnp.zeros_like(k)
    dv = jnp.zeros_like(v)
    for (r0, r1), kv_end in _row_blocks(blocks, group):
        s = _block_scores(q, k, mask, (r0, r1), kv_end)
        p = jnp.exp(s - lse[:, :, r0:r1]) * query_valid[:, :, r0:r1]
        do = d_out[:, :, r0:r1]
        # dk/dv sum over every row (all G query heads) sharing each key/value head: one contracted axis.
        dv = dv.at[:, :, :kv_end].add(jnp.einsum("bhrk,bhrd->bhkd", p, do))
        dp = jnp.einsum("bhrd,bhkd->bhrk", do, v[:, :, :kv_end])
        ds = p * (dp - delta[:, :, r0:r1])
        dq_blocks.append(jnp.einsum("bhrk,bhkd->bhrd", ds, k[:, :, :kv_end]))
        dk = dk.at[:, :, :kv_end].add(jnp.einsum("bhrk,bhrd->bhkd", ds, q[:, :, r0:r1]))
    return jnp.concatenate(dq_blocks, axis=2), dk, dv, None, None


_attention_rows.defvjp(_attention_fwd, _attention_bwd)


def xla_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segment_ids: jax.Array | None = None,
    *,
    causal: bool = True,
    sm_scale: float | None = None,
    block_q: int = DEFAULT_BLOCK_Q,
) -> jax.Array:
    """Self-attention, q [B, L, H, D], k/v [B, L, KVH, D] (KVH divides H) -> [B, L, H, D]; math in float32,
    output in q's dtype."""
    batch, q_len, heads, head_dim = q.shape
    group = kv_group_size(heads, k.shape[2])
    kv_heads = heads // group
    if k.shape[1] != q_len:
        raise ValueError(f"xla_attention is self-attention: q has {q_len} positions, k has {k.shape[1]}")
    if block_q < 1:
        raise ValueError(f"block_q must be positive, got {block_q}")
    if sm_scale is None:
        sm_scale = head_dim**-0.5
    if segment_ids is None:
        segment_ids = jnp.ones((batch, q_len), jnp.int32)
    # One row per (query position, group member), group member minor: a position's G rows share its mask
    # row and validity.
    mask = jnp.repeat(attention_mask(segment_ids, segment_ids, causal=causal), group, axis=1)
    query_valid = jnp.repeat((segment_ids != 0).astype(jnp.float32), group, axis=1)[:, None, :, None]
    to_bhld = lambda x: jnp.swapaxes(x.astype(jnp.float32), 1, 2)  # noqa: E731
    blocks = tuple(_query_blocks(q_len, q_len, block_q, causal))
    # Query head h = kv_head * G + member (reference.repeat_kv order): [B, L, KVH, G, D] -> [B, KVH, L*G, D].
    rows = to_bhld(q.reshape(batch, q_len, kv_heads, group, head_dim))
    rows = rows.reshape(batch, kv_heads, q_len * group, head_dim) * sm_scale
    out = _attention_rows(rows, to_bhld(k), to_bhld(v), mask, query_valid, blocks, group)
    out = out.reshape(batch, kv_heads, q_len, group, head_dim)
    return jnp.swapaxes(out, 1, 2).reshape(batch, q_len, heads, head_dim).astype(q.dtype)


def xla_backend(q, k, v, segment_ids, *, causal, sm_scale, block_sizes=None):
    """Backend-registry adapter: `block_sizes[0]`, when given, is the query block."""
    block_q = DEFAULT_BLOCK_Q if not block_sizes else int(block_sizes[0])
    return xla_attention(q, k, v, segment_ids, causal=causal, sm_scale=sm_scale, block_q=block_q)


def _register() -> None:
    from optiml_jax.kernels.backends import register_backend

    register_backend("xla", xla_backend)


_register()
