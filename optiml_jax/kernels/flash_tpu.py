"""Segment-aware flash attention for TPU (Pallas Mosaic): forward, dq and dk/dv kernels.

Every kernel walks a grid (batch, head, outer block, inner step). The block plan (`block_plan`) is
scalar-prefetched into SMEM as a compacted list of the inner blocks that hold work for each outer block
plus their count. Steps past the count run no compute (`pl.when`) and their index maps repeat the last
visited block, so the pipeline sees an unchanged block index and issues no DMA: skipped blocks cost one
grid step of bookkeeping, not a tile load and two matmuls.

Layout inside: [batch, heads, length, head_dim] (the model's [B, T, H, D] is transposed here, the
Mosaic-friendly layout where each tile is a contiguous (rows, head_dim) slab). Query segment ids are
broadcast along 128 lanes and key segment ids along 8 sublanes, as in JAX's bundled TPU kernel, so the
in-kernel mask is a plain vector compare. Row statistics (lse, delta) travel lane-broadcast [.., 128].

Grouped-query attention: k/v carry KVH <= H heads. The forward and dq grids run over query heads and the
key/value index maps read head h // G (G = H // KVH), so repeated keys/values never exist in HBM. The dk/dv
grid runs over key/value heads; its inner axis walks G x (query blocks), so each key block's gradient
accumulates over every query head of its group in VMEM before one write.

Masking: query i attends key j iff seg[i] == seg[j] != 0 (and j <= i when causal). Masked logits get a
large finite negative value and their probabilities are forced to exactly 0, so padding rows produce 0
output and 0 gradients (never NaN).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from optiml_jax.kernels.block_plan import BlockSizes, block_visit_mask, compact_visits

MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
LANES = 128
SUBLANES = 8
_NT = (((1,), (1,)), ((), ()))  # contract last dims: a @ b.T
_TN = (((0,), (0,)), ((), ()))  # contract first dims: a.T @ b


def _interpret_arg(interpret):
    """True -> JAX's generic interpreter (fast; checks the maths and the plan); a `pltpu.InterpretParams` ->
    the TPU simulator (models VMEM/SMEM, DMAs, out-of-bounds reads; ~100x slower per grid step)."""
    if isinstance(interpret, pltpu.InterpretParams):
        return interpret
    return bool(interpret)


def _compiler_params():
    return pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "parallel", "arbitrary"))


def _mask(q_seg, k_seg, q_start, k_start, causal: bool):
    """[bq, bk] bool from lane-broadcast query ids [bq, 128] and sublane-broadcast key ids [8, bk]."""
    q_ids = q_seg[:, :1]
    k_ids = k_seg[:1, :]
    mask = (q_ids == k_ids) & (q_ids != 0)
    if causal:
        shape = (q_ids.shape[0], k_ids.shape[1])
        rows = q_start + jax.lax.broadcasted_iota(jnp.int32, shape, 0)
        cols = k_start + jax.lax.broadcasted_iota(jnp.int32, shape, 1)
        mask = mask & (cols <= rows)
    return mask


def _div(x, d: int):
    """Index arithmetic on non-negative grid indices; lax.div, as `//` lowers to sign fix-ups Mosaic rejects."""
    return x if d == 1 else jax.lax.div(x, jnp.int32(d))


def _lane_segments(seg):
    batch, length = seg.shape
    q_lanes = jax.lax.broadcast_in_dim(seg, (batch, length, LANES), (0, 1))
    k_sublanes = jax.lax.broadcast_in_dim(seg, (batch, SUBLANES, length), (0, 2))
    return q_lanes, k_sublanes


def _to_lanes(x):
    """[B, H, T] f32 -> [B, H, T, 128] lane-broadcast."""
    return jax.lax.broadcast_in_dim(x, (*x.shape, LANES), (0, 1, 2))


def _flat_plan(visible):
    """The compacted visit plan of a [B, outer, inner] visibility mask, flattened for scalar prefetch:
    (inner block indices [B * outer * inner], visit counts [B * outer])."""
    indices, counts = compact_visits(visible)
    return indices.reshape(-1), counts.reshape(-1)


def _query_grid_maps(num_q: int, num_k: int, group: int):
    """Index maps of the grids over query blocks (forward and dq: grid (b, h, i, j), prefetched (cols, counts)):
    q-side blocks, k/v-side blocks (head h // group, the j-th visited key block), query and key segment ids."""
    kv_block = lambda b, i, j, cols: cols[(b * num_q + i) * num_k + j]  # noqa: E731
    q_side = lambda b, h, i, j, c, n: (b, h, i, 0)  # noqa: E731
    kv_side = lambda b, h, i, j, c, n: (b, _div(h, group), kv_block(b, i, j, c), 0)  # noqa: E731
    q_seg = lambda b, h, i, j, c, n: (b, i, 0)  # noqa: E731
    k_seg = lambda b, h, i, j, c, n: (b, 0, kv_block(b, i, j, c))  # noqa: E731
    return q_side, kv_side, q_seg, k_seg


def _operand_specs(bq: int, bk: int, dim: int, maps, *, backward: bool) -> list:
    """BlockSpecs of the kernel operands, in order: q, k, v, [do, lse, delta (backward),] query segment lanes,
    key segment sublanes. `maps` = (q-side, k/v-side, query-segment, key-segment) index maps."""
    q_side, kv_side, q_seg, k_seg = maps
    specs = [pl.BlockSpec((None, None, bq, dim), q_side), pl.BlockSpec((None, None, bk, dim), kv_side),
             pl.BlockSpec((None, None, bk, dim), kv_side)]
    if backward:
        specs += [pl.BlockSpec((None, None, bq, dim), q_side), pl.BlockSpec((None, None, bq, LANES), q_side),
                  pl.BlockSpec((None, None, bq, LANES), q_side)]
    return specs + [pl.BlockSpec((None, bq, LANES), q_seg), pl.BlockSpec((None, SUBLANES, bk), k_seg)]


def _planned_call(kernel, *, grid, in_specs, out_specs, scratch_shapes, out_shape, interpret, name):
    """The one `pallas_call` form of every kernel here: the visit plan (indices, counts) scalar-prefetched into
    SMEM ahead of the operands, the innermost grid axis sequential (it accumulates in VMEM scratch)."""
    return pl.pallas_call(
        kernel,
        grid_spec=pltpu.PrefetchScalarGridSpec(num_scalar_prefetch=2, grid=grid, in_specs=in_specs,
                                               out_specs=out_specs, scratch_shapes=scratch_shapes),
        out_shape=out_shape,
        compiler_params=_compiler_params(),
        interpret=_interpret_arg(interpret),
        name=name,
    )


# ----------------------------------------------------------------------------------------------- forward


def _fwd_kernel(cols_ref, counts_ref, q_ref, k_ref, v_ref, qseg_ref, kseg_ref, o_ref, lse_ref, *rest,
                causal, sm_scale, block_q, block_k, num_outer, num_inner, count_visits):
    if count_visits:
        visits_ref, m_sc, l_sc, acc_sc = rest
    else:
        visits_ref = None
        m_sc, l_sc, acc_sc = rest
    b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)
    row = b * num_outer + i

    @pl.when(j == 0)
    def _init():
        m_sc[...] = jnp.full(m_sc.shape, MASK_VALUE, jnp.float32)
        l_sc[...] = jnp.zeros(l_sc.shape, jnp.float32)
        acc_sc[...] = jnp.zeros(acc_sc.shape, jnp.float32)
        if visits_ref is not None:
            visits_ref[...] = jnp.zeros(visits_ref.shape, jnp.int32)

    @pl.when(j < counts_ref[row])
    def _compute():
        kb = cols_ref[row * num_inner + j]
        s = jax.lax.dot_general(q_ref[...], k_ref[...], _NT, preferred_element_type=jnp.float32) * sm_scale
        mask = _mask(qseg_ref[...], kseg_ref[...], i * block_q, kb * block_k, causal)
        s = jnp.where(mask, s, MASK_VALUE)
        m_prev, l_prev = m_sc[...], l_sc[...]  # [bq, 128]
        m_next = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))
        p = jnp.where(mask, jnp.exp(s - m_next[:, :1]), 0.0)
        alpha = jnp.exp(m_prev - m_next)
        l_sc[...] = alpha * l_prev + jnp.sum(p, axis=1, keepdims=True)
        m_sc[...] = m_next
        pv = jax.lax.dot_general(p.astype(v_ref.dtype), v_ref[...], (((1,), (0,)), ((), ())),
                                 preferred_element_type=jnp.float32)
        acc_sc[...] = acc_sc[...] * alpha[:, :1] + pv
        if visits_ref is not None:
            visits_ref[...] += 1

    @pl.when(j == num_inner - 1)
    def _finalize():
        l = l_sc[...]
        safe = jnp.where(l == 0.0, 1.0, l)
        o_ref[...] = (acc_sc[...] / safe[:, :1]).astype(o_ref.dtype)
        lse_ref[...] = jnp.where(l == 0.0, 0.0, m_sc[...] + jnp.log(safe))


def forward(q, k, v, seg, *, causal, sm_scale, sizes: BlockSizes, interpret, count_visits=False):
    """q/k/v [B, T, H, D] (T divisible by the blocks), seg [B, T] int32 -> (o [B,T,H,D], lse [B,H,T], visits).

    `visits` ([B, H, num_q_blocks] int32, the number of key blocks each query block computed) is returned
    when `count_visits`, else None.
    """
    batch, length, heads, dim = q.shape
    bq, bk = sizes.block_q, sizes.block_k
    nq, nk = length // bq, length // bk
    cols, counts = _flat_plan(block_visit_mask(seg, bq, bk, causal=causal))
    qt, kt, vt = (jnp.swapaxes(x, 1, 2) for x in (q, k, v))
    maps = _query_grid_maps(nq, nk, heads // k.shape[2])
    q_side = maps[0]
    out_shape = [
        jax.ShapeDtypeStruct(qt.shape, q.dtype),
        jax.ShapeDtypeStruct((batch, heads, length, LANES), jnp.float32),
    ]
    out_specs = [pl.BlockSpec((None, None, bq, dim), q_side), pl.BlockSpec((None, None, bq, LANES), q_side)]
    if count_visits:
        out_shape.append(jax.ShapeDtypeStruct((batch, heads, nq * SUBLANES, LANES), jnp.int32))
        out_specs.append(pl.BlockSpec((None, None, SUBLANES, LANES), q_side))
    kernel = functools.partial(
        _fwd_kernel, causal=causal, sm_scale=sm_scale, block_q=bq, block_k=bk, num_outer=nq, num_inner=nk,
        count_visits=count_visits,
    )
    outs = _planned_call(
        kernel, grid=(batch, heads, nq, nk), in_specs=_operand_specs(bq, bk, dim, maps, backward=False),
        out_specs=out_specs,
        scratch_shapes=[pltpu.VMEM((bq, LANES), jnp.float32), pltpu.VMEM((bq, LANES), jnp.float32),
                        pltpu.VMEM((bq, dim), jnp.float32)],
        out_shape=out_shape, interpret=interpret, name="segment_flash_fwd",
    )(cols, counts, qt, kt, vt, *_lane_segments(seg))
    o, lse = jnp.swapaxes(outs[0], 1, 2), outs[1][..., 0]
    visits = outs[2][:, :, ::SUBLANES, 0] if count_visits else None
    return o, lse, visits


# ---------------------------------------------------------------------------------------------- backward


def _dq_kernel(cols_ref, counts_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, qseg_ref, kseg_ref,
               dq_ref, dq_sc, *, causal, sm_scale, block_q, block_k, num_outer, num_inner):
    b, i, j = pl.program_id(0), pl.program_id(2), pl.program_id(3)
    row = b * num_outer + i

    @pl.when(j == 0)
    def _init():
        dq_sc[...] = jnp.zeros(dq_sc.shape, jnp.float32)

    @pl.when(j < counts_ref[row])
    def _compute():
        kb = cols_ref[row * num_inner + j]
        k = k_ref[...]
        s = jax.lax.dot_general(q_ref[...], k, _NT, preferred_element_type=jnp.float32) * sm_scale
        mask = _mask(qseg_ref[...], kseg_ref[...], i * block_q, kb * block_k, causal)
        p = jnp.where(mask, jnp.exp(jnp.where(mask, s, MASK_VALUE) - lse_ref[...][:, :1]), 0.0)
        dp = jax.lax.dot_general(do_ref[...], v_ref[...], _NT, preferred_element_type=jnp.float32)
        ds = p * (dp - di_ref[...][:, :1])
        dq_sc[...] += jax.lax.dot_general(ds.astype(k.dtype), k, (((1,), (0,)), ((), ())),
                                          preferred_element_type=jnp.float32)

    @pl.when(j == num_inner - 1)
    def _finalize():
        dq_ref[...] = (dq_sc[...] * sm_scale).astype(dq_ref.dtype)


def _dkv_kernel(rows_ref, counts_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, di_ref, qseg_ref, kseg_ref,
                dk_ref, dv_ref, dk_sc, dv_sc, *, causal, sm_scale, block_q, block_k, num_outer, num_inner, group):
    # Inner step = (query head within the group) * num_inner + (index into this key block's visit list).
    b, jk, step = pl.program_id(0), pl.program_id(2), pl.program_id(3)
    col = b * num_outer + jk
    visit = jax.lax.rem(step, num_inner) if group > 1 else step

    @pl.when(step == 0)
    def _init():
        dk_sc[...] = jnp.zeros(dk_sc.shape, jnp.float32)
        dv_sc[...] = jnp.zeros(dv_sc.shape, jnp.float32)

    @pl.when(visit < counts_ref[col])
    def _compute():
        qb = rows_ref[col * num_inner + visit]
        q, do = q_ref[...], do_ref[...]
        s = jax.lax.dot_general(q, k_ref[...], _NT, preferred_element_type=jnp.float32) * sm_scale
        mask = _mask(qseg_ref[...], kseg_ref[...], qb * block_q, jk * block_k, causal)
        p = jnp.where(mask, jnp.exp(jnp.where(mask, s, MASK_VALUE) - lse_ref[...][:, :1]), 0.0)
        dv_sc[...] += jax.lax.dot_general(p.astype(do.dtype), do, _TN, preferred_element_type=jnp.float32)
        dp = jax.lax.dot_general(do, v_ref[...], _NT, preferred_element_type=jnp.float32)
        ds = p * (dp - di_ref[...][:, :1])
        dk_sc[...] += jax.lax.dot_general(ds.astype(q.dtype), q, _TN, preferred_element_type=jnp.float32)

    @pl.when(step == group * num_inner - 1)
    def _finalize():
        dk_ref[...] = (dk_sc[...] * sm_scale).astype(dk_ref.dtype)
        dv_ref[...] = dv_sc[...].astype(dv_ref.dtype)


def backward(q, k, v, seg, o, lse, do, *, causal, sm_scale, sizes: BlockSizes, interpret):
    """Gradients (dq [B, T, H, D], dk/dv [B, T, KVH, D]) from the forward residuals (o [B,T,H,D], lse [B,H,T])."""
    delta = jnp.einsum("bthd,bthd->bht", o.astype(jnp.float32), do.astype(jnp.float32))
    qt, kt, vt, dot_ = (jnp.swapaxes(x, 1, 2) for x in (q, k, v, do))
    operands = (qt, kt, vt, dot_, _to_lanes(lse), _to_lanes(delta), *_lane_segments(seg))
    dq = _dq(operands, seg, causal=causal, sm_scale=sm_scale, sizes=sizes, interpret=interpret)
    dk, dv = _dkv(operands, seg, causal=causal, sm_scale=sm_scale, sizes=sizes, interpret=interpret)
    return tuple(jnp.swapaxes(x, 1, 2) for x in (dq, dk, dv))


def _dq(operands, seg, *, causal, sm_scale, sizes: BlockSizes, interpret):
    """dq [B, H, T, D]: grid over query blocks, inner steps over the visited key blocks (the forward's plan)."""
    qt, kt = operands[0], operands[1]
    batch, heads, length, dim = qt.shape
    bq, bk = sizes.block_q, sizes.block_k
    nq, nk = length // bq, length // bk
    cols, counts = _flat_plan(block_visit_mask(seg, bq, bk, causal=causal))
    maps = _query_grid_maps(nq, nk, heads // kt.shape[1])
    return _planned_call(
        functools.partial(_dq_kernel, causal=causal, sm_scale=sm_scale, block_q=bq, block_k=bk,
                          num_outer=nq, num_inner=nk),
        grid=(batch, heads, nq, nk), in_specs=_operand_specs(bq, bk, dim, maps, backward=True),
        out_specs=pl.BlockSpec((None, None, bq, dim), maps[0]),
        scratch_shapes=[pltpu.VMEM((bq, dim), jnp.float32)],
        out_shape=jax.ShapeDtypeStruct(qt.shape, qt.dtype), interpret=interpret, name="segment_flash_dq",
    )(cols, counts, *operands)


def _dkv(operands, seg, *, causal, sm_scale, sizes: BlockSizes, interpret):
    """dk, dv [B, KVH, T, D]: grid over key/value heads and key blocks, inner steps over the query blocks that see
    them (the transposed plan) for each query head of the group."""
    qt, kt, vt = operands[:3]
    batch, heads, length, dim = qt.shape
    kv_heads = kt.shape[1]
    group = heads // kv_heads
    bq, bk = sizes.q_bwd, sizes.k_bwd
    nq, nk = length // bq, length // bk
    rows, counts = _flat_plan(jnp.swapaxes(block_visit_mask(seg, bq, bk, causal=causal), 1, 2))  # [B, nk, nq]
    # Grid over key/value heads; inner step s covers query head h * group + s // nq and visit s % nq. Past a
    # key block's visit count the maps repeat that head's last visited block (no DMA, as in the forward).
    if group == 1:
        qb_ = lambda b, j, s, r: r[(b * nk + j) * nq + s]  # noqa: E731
        q_head = lambda h, s: h  # noqa: E731
    else:
        qb_ = lambda b, j, s, r: r[(b * nk + j) * nq + jax.lax.rem(s, nq)]  # noqa: E731
        q_head = lambda h, s: h * group + _div(s, nq)  # noqa: E731
    k_side = lambda b, h, j, s, r, n: (b, h, j, 0)  # noqa: E731
    maps = (lambda b, h, j, s, r, n: (b, q_head(h, s), qb_(b, j, s, r), 0), k_side,
            lambda b, h, j, s, r, n: (b, qb_(b, j, s, r), 0), lambda b, h, j, s, r, n: (b, 0, j))
    return _planned_call(
        functools.partial(_dkv_kernel, causal=causal, sm_scale=sm_scale, block_q=bq, block_k=bk,
                          num_outer=nk, num_inner=nq, group=group),
        grid=(batch, kv_heads, nk, group * nq), in_specs=_operand_specs(bq, bk, dim, maps, backward=True),
        out_specs=[pl.BlockSpec((None, None, bk, dim), k_side), pl.BlockSpec((None, None, bk, dim), k_side)],
        scratch_shapes=[pltpu.VMEM((bk, dim), jnp.float32), pltpu.VMEM((bk, dim), jnp.float32)],
        out_shape=[jax.ShapeDtypeStruct(kt.shape, kt.dtype), jax.ShapeDtypeStruct(vt.shape, vt.dtype)],
        interpret=interpret, name="segment_flash_dkv",
    )(rows, counts, *operands)
