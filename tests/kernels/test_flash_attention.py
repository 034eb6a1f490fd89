"""Segment-aware Pallas flash attention (both kernel flavours, CPU interpret mode) vs the reference backend."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from flash_cases import check_close, dense_block_mask, packed_segment_ids, random_qkv, vjp_outputs
from optiml_jax.kernels import dot_product_attention, reference_attention
from optiml_jax.kernels.pallas_attention import block_visits, flash_attention

# (kernel, dtype, head_dim, length, block_sizes, rows of example lengths)
_slow = pytest.mark.slow
CASES = [
    # length not divisible by the block; boundaries off-block; trailing padding; a single-segment row
    ("tpu", jnp.float32, 64, 200, (64, 64), [[37, 50, 90], [200]]),
    # different forward / dk-dv block shapes, padding-heavy rows, length 96 padded to the block grid
    ("gpu", jnp.float32, 128, 96, (32, 32, 16, 32), [[30, 30, 30], [1, 95]]),
    ("tpu", jnp.float32, 80, 128, (32, 64, 64, 32), [[5, 60], [100, 20]]),
    ("gpu", jnp.bfloat16, 80, 128, (32, 64), [[70, 40], [128]]),
    pytest.param("gpu", jnp.float32, 64, 200, (64, 64), [[37, 50, 90], [200]], marks=_slow),
    pytest.param("tpu", jnp.bfloat16, 128, 128, (64, 64), [[70, 40], [128]], marks=_slow),
]


@pytest.mark.parametrize("kernel,dtype,head_dim,length,blocks,rows", CASES)
def test_forward_and_grads_match_reference(kernel, dtype, head_dim, length, blocks, rows):
    seg = packed_segment_ids(rows, length)
    q, k, v, do = random_qkv(jax.random.key(head_dim + length), len(rows), length, 2, head_dim, dtype)
    flash = jax.jit(lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=blocks, backend=kernel))
    out, grads = vjp_outputs(flash, q, k, v, do)
    ref_out, ref_grads = vjp_outputs(lambda q, k, v: reference_attention(q, k, v, seg), q, k, v, do)
    assert out.shape == q.shape and out.dtype == q.dtype
    check_close(out, ref_out, dtype, atol=1e-5)
    for name, g, rg in zip("qkv", grads, ref_grads):
        check_close(g, rg, dtype, atol=1e-4)
    # padding queries output exactly zero and padding keys get exactly zero gradient
    pad = np.asarray(seg) == 0
    assert not np.asarray(out, np.float32)[pad].any()
    assert not np.asarray(grads[1], np.float32)[pad].any() and not np.asarray(grads[2], np.float32)[pad].any()


def test_tpu_kernel_under_the_tpu_simulator():
    """TPU interpret mode models SMEM/VMEM, DMAs and raises on out-of-bounds reads (index-map clamping)."""
    seg = packed_segment_ids([[20, 50, 30, 28]], 128)
    q, k, v, do = random_qkv(jax.random.key(1), 1, 128, 1, 64)
    params = pltpu.InterpretParams(out_of_bounds_reads="raise", uninitialized_memory="nan")
    try:
        out, grads = vjp_outputs(
            lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=(32, 32), backend="tpu", interpret=params),
            q, k, v, do,
        )
    finally:
        pltpu.reset_tpu_interpret_mode_state()
    ref_out, ref_grads = vjp_outputs(lambda q, k, v: reference_attention(q, k, v, seg), q, k, v, do)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    for g, rg in zip(grads, ref_grads):
        np.testing.assert_allclose(g, rg, atol=1e-4)


@pytest.mark.parametrize("kernel", [pytest.param("tpu", marks=_slow), "gpu"])
def test_no_leak_across_segments(kernel):
    """Perturbing example 2 of row 0 leaves every other example's outputs and gradients bit-identical."""
    seg = packed_segment_ids([[30, 40, 58], [128]], 128)
    q, k, v, do = random_qkv(jax.random.key(2), 2, 128, 2, 64)
    target = np.zeros(seg.shape, bool)
    target[0] = np.asarray(seg[0]) == 2
    noise = random_qkv(jax.random.key(3), 2, 128, 2, 64)
    sel = jnp.asarray(target)[:, :, None, None]
    q2, k2, v2 = (jnp.where(sel, x + 3.0 * n, x) for x, n in zip((q, k, v), noise))
    fn = jax.jit(lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=(32, 32), backend=kernel))
    out_a, grads_a = vjp_outputs(fn, q, k, v, do)
    out_b, grads_b = vjp_outputs(fn, q2, k2, v2, do)
    others = ~target
    assert not np.allclose(np.asarray(out_a)[target], np.asarray(out_b)[target])  # the perturbation is real
    np.testing.assert_array_equal(np.asarray(out_a)[others], np.asarray(out_b)[others])
    for ga, gb in zip(grads_a, grads_b):
        np.testing.assert_array_equal(np.asarray(ga)[others], np.asarray(gb)[others])


@pytest.mark.parametrize("kernel", ["tpu", "gpu"])
def test_kernel_visits_exactly_the_blocks_with_work(kernel):
    seg = packed_segment_ids([[32] * 8, [64] * 4, [20, 150, 40], [256]], 256)
    q, k, v, _ = random_qkv(jax.random.key(4), 4, 256, 1, 64)
    visits, plan, sizes = block_visits(q, k, v, seg, block_sizes=(32, 32), backend=kernel)
    dense = dense_block_mask(seg, 32, 32)
    expected = dense.sum(-1)  # [B, nq]: key blocks holding an attending pair, from the dense mask
    np.testing.assert_array_equal(np.asarray(visits), np.broadcast_to(expected[:, None], visits.shape))
    causal_blocks = np.arange(1, 9)  # what a causal-only kernel visits per query block
    assert np.asarray(visits)[0, 0].tolist() == [1] * 8  # 8 block-aligned examples: diagonal only
    assert np.asarray(visits)[3, 0].tolist() == causal_blocks.tolist()  # one segment: full triangle


@pytest.mark.parametrize("kernel", [pytest.param("tpu", marks=_slow), "gpu"])
def test_unsorted_segment_ids_stay_correct(kernel):
    rng = np.random.default_rng(5)
    seg = jnp.asarray(rng.integers(0, 3, size=(2, 96)), jnp.int32)  # interleaved ids and padding
    q, k, v, do = random_qkv(jax.random.key(5), 2, 96, 1, 64)
    fn = jax.jit(lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=(32, 32), backend=kernel))
    out, grads = vjp_outputs(fn, q, k, v, do)
    ref_out, ref_grads = vjp_outputs(lambda q, k, v: reference_attention(q, k, v, seg), q, k, v, do)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    for g, rg in zip(grads, ref_grads):
        np.testing.assert_allclose(g, rg, atol=1e-4)
    visits, _, _ = block_visits(q, k, v, seg, block_sizes=(32, 32), backend=kernel)
    assert (np.asarray(visits) >= dense_block_mask(seg, 32, 32).sum(-1)[:, None]).all()


def test_pallas_backend_through_dispatcher_without_segment_ids():
    q, k, v, _ = random_qkv(jax.random.key(6), 1, 40, 2, 64)
    out = dot_product_attention(q, k, v, None, causal=False, backend="pallas", block_sizes=(16, 16))
    np.testing.assert_allclose(out, reference_attention(q, k, v, None, causal=False), atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    q, k, v, _ = random_qkv(jax.random.key(7), 1, 16, 1, 64)
    with pytest.raises(ValueError, match="segment_ids shape"):
        flash_attention(q, k, v, jnp.ones((1, 8), jnp.int32))
    with pytest.raises(ValueError, match="one shape"):
        flash_attention(q, k[:, :8], v)
    with pytest.raises(ValueError, match="backend"):
        flash_attention(q, k, v, backend="cuda")


def test_tpu_tile_check_rejects_blocks_mosaic_cannot_lower():
    from optiml_jax.kernels.block_plan import BlockSizes
    from optiml_jax.kernels.pallas_attention import _check_tpu_tiles

    _check_tpu_tiles(BlockSizes(128, 256), 512)
    _check_tpu_tiles(BlockSizes(64, 64), 64)  # a single whole-row tile is fine
    with pytest.raises(ValueError, match="block_k=64 must be a multiple of 128"):
        _check_tpu_tiles(BlockSizes(64, 64), 256)
