"""Segment-aware flash attention for GPU (Pallas, Triton lowering): forward, dq and dk/dv kernels.

Same semantics and block plan as `flash_tpu`, shaped for Triton: one program per (outer block, batch,
head) that loops over inner blocks with `lax.fori_loop`. The loop runs only over the hull
[first, end) of blocks the plan marks visible (from per-block segment ranges + causal bound, computed in
JAX and passed as two scalars per program), and inside the hull a `lax.cond` on the block's mask skips
any block with no attending pair (only non-contiguous, i.e. unsorted, segment layouts have such blocks).
So a row packed with n equal examples does ~1/n of the causal work.

Grouped-query attention: k/v carry KVH <= H heads. Forward and dq programs run per query head and read
key/value head h // G (G = H // KVH) through the BlockSpec index map; dk/dv programs run per key/value head
and loop over the G query heads of the group, accumulating in registers. Nothing repeats k/v in memory.

Layout is the model's [B, T, H, D] (no transposes). Triton needs power-of-two tiles, so head_dim is
zero-padded to the next power of two (80 -> 128) by the wrappers here; zero columns change no logits and
their outputs are sliced off.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from optiml_jax.kernels.block_plan import BlockSizes, block_visit_mask, visit_bounds

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)


def _padded_dim(dim: int) -> int:
    return max(16, pl.next_power_of_2(dim))


def _pad_dim(x, dim_p):
    return x if x.shape[-1] == dim_p else jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, dim_p - x.shape[-1])])


def _mask(q_seg, k_seg, q_start, k_start, causal):
    mask = (q_seg[:, None] == k_seg[None, :]) & (q_seg[:, None] != 0)
    if causal:
        rows = q_start + jnp.arange(q_seg.shape[0])
        cols = k_start + jnp.arange(k_seg.shape[0])
        mask = mask & (cols[None, :] <= rows[:, None])
    return mask


def _any(mask):
    return jnp.max(mask.astype(jnp.int32)) > 0


def _params(dim_p, block_q, block_k):
    num_warps = 4 if dim_p <= 64 and block_q * block_k <= 128 * 64 else 8
    return plgpu.CompilerParams(num_warps=num_warps, num_stages=2)


# ----------------------------------------------------------------------------------------------- forward


def _fwd_kernel(q_ref, k_ref, v_ref, seg_ref, first_ref, end_ref, o_ref, lse_ref, *visits_ref,
                causal, sm_scale, block_q, block_k):
    i = pl.program_id(0)
    q = q_ref[...]
    q_seg = seg_ref[pl.ds(i * block_q, block_q)]

    def body(j, carry):
        k_seg = seg_ref[pl.ds(j * block_k, block_k)]
        mask = _mask(q_seg, k_seg, i * block_q, j * block_k, causal)

        def compute():
            acc, m, l, n = carry
            k = k_ref[pl.ds(j * block_k, block_k), :]
            s = jnp.where(mask, plgpu.dot(q, k, trans_b=True) * sm_scale, MASK_VALUE)
            m_next = jnp.maximum(m, jnp.max(s, axis=1))
            p = jnp.where(mask, jnp.exp(s - m_next[:, None]), 0.0)
            alpha = jnp.exp(m - m_next)
            v = v_ref[pl.ds(j * block_k, block_k), :]
            acc = acc * alpha[:, None] + plgpu.dot(p.astype(v.dtype), v)
            return acc, m_next, alpha * l + jnp.sum(p, axis=1), n + 1

        return lax.cond(_any(mask), compute, lambda: carry)

    init = (
        jnp.zeros((block_q, q.shape[-1]), jnp.float32),
        jnp.full((block_q,), MASK_VALUE, jnp.float32),
        jnp.zeros((block_q,), jnp.float32),
        jnp.int32(0),
    )
    acc, m, l, n = lax.fori_loop(first_ref[()], end_ref[()], body, init)
    safe = jnp.where(l == 0.0, 1.0, l)
    o_ref[...] = (acc / safe[:, None]).astype(o_ref.dtype)
    lse_ref[...] = jnp.where(l == 0.0, 0.0, m + jnp.log(safe))
    if visits_ref:
        visits_ref[0][...] = jnp.full((block_q,), n, jnp.int32)


def forward(q, k, v, seg, *, causal, sm_scale, sizes: BlockSizes, interpret, count_visits=False):
    """q/k/v [B, T, H, D] (T divisible by the blocks), seg [B, T] -> (o, lse [B, H, T], visits or None)."""
    batch, length, heads, dim = q.shape
    group = heads // k.shape[2]
    dim_p = _padded_dim(dim)
    bq, bk = sizes.block_q, sizes.block_k
    nq = length // bq
    first, end = visit_bounds(block_visit_mask(seg, bq, bk, causal=causal))
    qp, kp, vp = (_pad_dim(x, dim_p) for x in (q, k, v))
    full = pl.BlockSpec((None, length, None, dim_p), lambda i, b, h: (b, 0, h // group, 0))
    q_block = pl.BlockSpec((None, bq, None, dim_p), lambda i, b, h: (b, i, h, 0))
    row_block = pl.BlockSpec((None, None, bq), lambda i, b, h: (b, h, i))
    scalar = pl.BlockSpec((None, None), lambda i, b, h: (b, i))
    out_shape = [jax.ShapeDtypeStruct(qp.shape, q.dtype), jax.ShapeDtypeStruct((batch, heads, length), jnp.float32)]
    out_specs = [q_block, row_block]
    if count_visits:
        out_shape.append(jax.ShapeDtypeStruct((batch, heads, length), jnp.int32))
        out_specs.append(row_block)
    outs = pl.pallas_call(
        functools.partial(_fwd_kernel, causal=causal, sm_scale=sm_scale, block_q=bq, block_k=bk),
        grid=(nq, batch, heads),
        in_specs=[q_block, full, full, pl.BlockSpec((None, length), lambda i, b, h: (b, 0)), scalar, scalar],
        out_specs=out_specs,
        out_shape=out_shape,
        compiler_params=_params(dim_p, bq, bk),
        interpret=interpret,
        name="segment_flash_fwd_gpu",
    )(qp, kp, vp, seg, first, end)
    visits = outs[2][:, :, ::bq] if count_visits else None
    return outs[0][..., :dim], outs[1], visits


# ---------------------------------------------------------------------------------------------- backward


def _dq_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, seg_ref, first_ref, end_ref, dq_ref,
               *, causal, sm_scale, block_q, block_k):
    i = pl.program_id(0)
    q, do = q_ref[...], do_ref[...]
    lse, di = lse_ref[...], di_ref[...]
    q_seg = seg_ref[pl.ds(i * block_q, block_q)]

    def body(j, dq):
        k_seg = seg_ref[pl.ds(j * block_k, block_k)]
        mask = _mask(q_seg, k_seg, i * block_q, j * block_k, causal)

        def compute():
            k = k_ref[pl.ds(j * block_k, block_k), :]
            v = v_ref[pl.ds(j * block_k, block_k), :]
            s = jnp.where(mask, plgpu.dot(q, k, trans_b=True) * sm_scale, MASK_VALUE)
            p = jnp.where(mask, jnp.exp(s - lse[:, None]), 0.0)
            ds = p * (plgpu.dot(do, v, trans_b=True) - di[:, None])
            return dq + plgpu.dot(ds.astype(k.dtype), k)

        return lax.cond(_any(mask), compute, lambda: dq)

    dq = lax.fori_loop(first_ref[()], end_ref[()], body, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * sm_scale).astype(dq_ref.dtype)


def _dkv_kernel(q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, seg_ref, first_ref, end_ref, dk_ref, dv_ref,
                *, causal, sm_scale, block_q, block_k, group):
    """One key block of one key/value head; with GQA (group > 1) the q/do/lse/delta refs hold the group's
    `group` query heads ([T, group, D] and [group, T]) and the loop below runs once per query head."""
    j = pl.program_id(0)
    k, v = k_ref[...], v_ref[...]
    k_seg = seg_ref[pl.ds(j * block_k, block_k)]

    def body(i, carry, g):
        q_seg = seg_ref[pl.ds(i * block_q, block_q)]
        mask = _mask(q_seg, k_seg, i * block_q, j * block_k, causal)

        def compute():
            dk, dv = carry
            rows = pl.ds(i * block_q, block_q)
            if g is None:
                q, do = q_ref[rows, :], do_ref[rows, :]
                lse, di = lse_ref[rows], di_ref[rows]
            else:
                q, do = q_ref[rows, g, :], do_ref[rows, g, :]
                lse, di = lse_ref[g, rows], di_ref[g, rows]
            s = jnp.where(mask, plgpu.dot(q, k, trans_b=True) * sm_scale, MASK_VALUE)
            p = jnp.where(mask, jnp.exp(s - lse[:, None]), 0.0)
            dv = dv + plgpu.dot(p.astype(do.dtype), do, trans_a=True)
            ds = p * (plgpu.dot(do, v, trans_b=True) - di[:, None])
            return dk + plgpu.dot(ds.astype(q.dtype), q, trans_a=True), dv

        return lax.cond(_any(mask), compute, lambda: carry)

    zeros = jnp.zeros(k.shape, jnp.float32)
    carry = (zeros, zeros)
    for g in ([None] if group == 1 else range(group)):
        carry = lax.fori_loop(first_ref[()], end_ref[()], functools.partial(body, g=g), carry)
    dk, dv = carry
    dk_ref[...] = (dk * sm_scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def backward(q, k, v, seg, o, lse, do, *, causal, sm_scale, sizes: BlockSizes, interpret):
    """Gradients (dq [B, T, H, D], dk/dv [B, T, KVH, D]) from forward residuals (o [B, T, H, D], lse [B, H, T])."""
    batch, length, heads, dim = q.shape
    kv_heads = k.shape[2]
    group = heads // kv_heads
    dim_p = _padded_dim(dim)
    delta = jnp.einsum("bthd,bthd->bht", o.astype(jnp.float32), do.astype(jnp.float32))
    qp, kp, vp, dop = (_pad_dim(x, dim_p) for x in (q, k, v, do))
    seg_spec = pl.BlockSpec((None, length), lambda o_, b, h: (b, 0))
    full_kv = pl.BlockSpec((None, length, None, dim_p), lambda o_, b, h: (b, 0, h // group, 0))
    scalar = pl.BlockSpec((None, None), lambda o_, b, h: (b, o_))
    if group == 1:
        full_q = pl.BlockSpec((None, length, None, dim_p), lambda o_, b, h: (b, 0, h, 0))
        full_rows = pl.BlockSpec((None, None, length), lambda o_, b, h: (b, h, 0))
    else:  # program h of the dk/dv grid is key/value head h: it reads query heads [h * group, (h + 1) * group)
        full_q = pl.BlockSpec((None, length, group, dim_p), lambda o_, b, h: (b, 0, h, 0))
        full_rows = pl.BlockSpec((None, group, length), lambda o_, b, h: (b, h, 0))

    bq, bk = sizes.block_q, sizes.block_k
    first, end = visit_bounds(block_visit_mask(seg, bq, bk, causal=causal))
    q_block = pl.BlockSpec((None, bq, None, dim_p), lambda i, b, h: (b, i, h, 0))
    row_block = pl.BlockSpec((None, None, bq), lambda i, b, h: (b, h, i))
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, causal=causal, sm_scale=sm_scale, block_q=bq, block_k=bk),
        grid=(length // bq, batch, heads),
        in_specs=[q_block, full_kv, full_kv, q_block, row_block, row_block, seg_spec, scalar, scalar],
        out_specs=q_block,
        out_shape=jax.ShapeDtypeStruct(qp.shape, q.dtype),
        compiler_params=_params(dim_p, bq, bk),
        interpret=interpret,
        name="segment_flash_dq_gpu",
    )(qp, kp, vp, dop, lse, delta, seg, first, end)

    bq, bk = sizes.q_bwd, sizes.k_bwd
    first_t, end_t = visit_bounds(jnp.swapaxes(block_visit_mask(seg, bq, bk, causal=causal), 1, 2))
    k_block = pl.BlockSpec((None, bk, None, dim_p), lambda j, b, h: (b, j, h, 0))
    dk, dv = pl.pallas_call(
        functools.partial(_dkv_kernel, causal=causal, sm_scale=sm_scale, block_q=bq, block_k=bk, group=group),
        grid=(length // bk, batch, kv_heads),
        in_specs=[full_q, k_block, k_block, full_q, full_rows, full_rows, seg_spec, scalar, scalar],
        out_specs=[k_block, k_block],
        out_shape=[jax.ShapeDtypeStruct(kp.shape, k.dtype), jax.ShapeDtypeStruct(vp.shape, v.dtype)],
        compiler_params=_params(dim_p, bq, bk),
        interpret=interpret,
        name="segment_flash_dkv_gpu",
    )(qp, kp, vp, dop, lse, delta, seg, first_t, end_t)
    return dq[..., :dim], dk[..., :dim], dv[..., :dim]
