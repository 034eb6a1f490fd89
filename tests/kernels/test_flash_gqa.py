"""Grouped-query attention (k/v with fewer heads than q) in every attention backend.

The oracle is the multi-head reference on k/v repeated to q's heads (Hugging Face's `repeat_kv`), i.e. the
pre-GQA code path; gradients w.r.t. the un-repeated k/v come from autodiff through the repeat (a sum over the
group), so every backend's own dk/dv accumulation over the group is checked against an independent sum.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flash_cases import check_close, dense_block_mask, packed_segment_ids, random_qkv, vjp_outputs
from optiml_jax.kernels import dot_product_attention, reference_attention
from optiml_jax.kernels.decode_attention import cached_attention, to_cache_layout
from optiml_jax.kernels.pallas_attention import block_visits, flash_attention, lower_for_platform

_slow = pytest.mark.slow


def repeated_reference(seg):
    """MHA reference on k/v repeated to q's heads: q head h reads k/v head h // group."""

    def fn(q, k, v):
        group = q.shape[2] // k.shape[2]
        return reference_attention(q, jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2), seg)

    return fn


def _assert_matches_oracle(fn, seg, q, k, v, do, dtype):
    oracle = repeated_reference(seg)
    # One compiled program for both sides' forward and backward (compilation dominates at these sizes).
    (out, grads), (ref_out, ref_grads) = jax.jit(lambda *a: (vjp_outputs(fn, *a), vjp_outputs(oracle, *a)))(q, k, v, do)
    assert out.dtype == q.dtype
    check_close(out, ref_out, dtype, atol=1e-5)
    for g, rg in zip(grads, ref_grads):
        check_close(g, rg, dtype, atol=1e-4)
    return out, grads


# (kernel, dtype, heads, kv_heads, length, block_sizes, rows of example lengths)
PALLAS_CASES = [
    # length not a multiple of the block, trailing padding, boundaries off-block, 2 query heads per kv head
    ("tpu", jnp.float32, 4, 2, 40, (32, 32), [[20, 13]]),
    # multi-query (one kv head), distinct dk/dv block shapes, a one-token segment, trailing padding
    ("gpu", jnp.bfloat16, 3, 1, 64, (32, 32, 16, 32), [[1, 40, 10]]),
    pytest.param("gpu", jnp.float32, 4, 2, 64, (32, 32), [[40, 24], [64]], marks=_slow),
    pytest.param("tpu", jnp.bfloat16, 4, 2, 64, (32, 32, 16, 32), [[40, 24], [1, 60]], marks=_slow),
    pytest.param("tpu", jnp.float32, 6, 2, 128, (32, 64), [[37, 50, 30], [128]], marks=_slow),
    pytest.param("gpu", jnp.float32, 6, 2, 128, (64, 32), [[37, 50, 30], [128]], marks=_slow),
]


@pytest.mark.parametrize("kernel,dtype,heads,kv_heads,length,blocks,rows", PALLAS_CASES)
def test_pallas_gqa_forward_and_grads_match_reference(kernel, dtype, heads, kv_heads, length, blocks, rows):
    seg = packed_segment_ids(rows, length)
    q, k, v, do = random_qkv(jax.random.key(heads * 10 + kv_heads), len(rows), length, heads, 64, dtype,
                             kv_heads=kv_heads)
    fn = lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=blocks, backend=kernel)  # noqa: E731
    out, grads = _assert_matches_oracle(fn, seg, q, k, v, do, dtype)
    assert grads[1].shape == k.shape and grads[2].shape == v.shape
    pad = np.asarray(seg) == 0
    assert not np.asarray(out, np.float32)[pad].any()
    assert not np.asarray(grads[1], np.float32)[pad].any() and not np.asarray(grads[2], np.float32)[pad].any()


@pytest.mark.parametrize("backend", ["reference", "xla"])
def test_pure_jax_backends_gqa(backend):
    seg = packed_segment_ids([[30, 20, 10], [64]], 70)
    q, k, v, do = random_qkv(jax.random.key(1), 2, 70, 6, 32, kv_heads=2)
    fn = lambda q, k, v: dot_product_attention(q, k, v, seg, backend=backend, block_sizes=(32,))  # noqa: E731
    _assert_matches_oracle(fn, seg, q, k, v, do, jnp.float32)


def test_kv_cache_decode_attention_gqa_reads_only_kv_heads():
    """Caches hold the kv heads only ([B, KVH, L, D]); a decode step equals the repeated-head reference."""
    batch, cache_len, heads, kv_heads, dim = 2, 16, 6, 2, 16
    q_all, k, v, _ = random_qkv(jax.random.key(2), batch, cache_len, heads, dim, kv_heads=kv_heads)
    seg = packed_segment_ids([[16], [3, 13]], cache_len)
    expected = jax.jit(repeated_reference(seg))(q_all, k, v)
    k_cache, v_cache = to_cache_layout(k), to_cache_layout(v)
    assert k_cache.shape == (batch, kv_heads, cache_len, dim)
    step = jax.jit(lambda q, s, t: cached_attention(q, k_cache, v_cache, s, seg, query_offset=t))
    for t in (0, 5, 15):  # query t against every cached slot (causal masking hides the future ones)
        got = step(q_all[:, t:t + 1], seg[:, t:t + 1], t)
        np.testing.assert_allclose(got[:, 0], expected[:, t], atol=1e-5)
    # The dispatcher's KV-cache path (kv_segment_ids given) as well.
    got = jax.jit(lambda q, s: dot_product_attention(q, k, v, s, kv_segment_ids=seg, query_offset=4))(
        q_all[:, 4:6], seg[:, 4:6])
    np.testing.assert_allclose(got, expected[:, 4:6], atol=1e-5)


@pytest.mark.parametrize("kernel", ["tpu", "gpu"])
def test_block_skipping_is_unchanged_by_grouping(kernel):
    seg = packed_segment_ids([[16, 16, 16, 16], [10, 50, 2]], 64)
    q, k, v, _ = random_qkv(jax.random.key(3), 2, 64, 2, 32, kv_heads=1)
    visits, _, _ = block_visits(q, k, v, seg, block_sizes=(16, 16), backend=kernel)
    expected = dense_block_mask(seg, 16, 16).sum(-1)
    assert visits.shape[1] == 2  # one count per query head
    assert np.asarray(visits)[0, 0].tolist() == [1] * 4  # block-aligned examples: diagonal blocks only
    np.testing.assert_array_equal(np.asarray(visits), np.broadcast_to(expected[:, None], visits.shape))


@pytest.mark.parametrize("kv_heads", [1, pytest.param(2, marks=_slow)])
def test_sharded_backend_gqa(kv_heads):
    """shard_map over a (data=2, model=2) mesh with 4 query heads. kv_heads=1 < 2 head shards: the kv head is
    repeated up to the shard count and each shard runs 2 query heads on 1 kv head. kv_heads=2: split as they
    are. Outputs and gradients equal the unsharded reference."""
    from jax.sharding import Mesh

    from optiml_jax.kernels.pallas_attention import make_sharded_backend

    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "model"))
    backend = make_sharded_backend(mesh, batch_axes=("data",), head_axes=("model",))
    seg = packed_segment_ids([[9, 5], [16]], 16)
    q, k, v, do = random_qkv(jax.random.key(kv_heads), 2, 16, 4, 16, kv_heads=kv_heads)
    fn = lambda q, k, v: backend(q, k, v, seg, causal=True, sm_scale=None, block_sizes=(16, 16))  # noqa: E731
    _assert_matches_oracle(fn, seg, q, k, v, do, jnp.float32)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_gqa_kernels_lower_for_platform(platform, dtype):
    target = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}[platform]
    for heads, kv_heads, head_dim in ((6, 2, 64), (8, 1, 128)):
        exported = lower_for_platform(platform, (2, 300, heads, head_dim), dtype, block_sizes=(128, 128),
                                      kv_heads=kv_heads)
        assert exported.mlir_module().count(target) >= 3
        # the exported grad function takes k/v with kv_heads heads
        assert [a.shape for a in exported.in_avals[:3]] == [(2, 300, heads, head_dim)] + [(2, 300, kv_heads, head_dim)] * 2


def test_bad_kv_head_counts_raise():
    q, k, v, _ = random_qkv(jax.random.key(4), 1, 16, 6, 16, kv_heads=4)
    for fn in (lambda: flash_attention(q, k, v), lambda: reference_attention(q, k, v),
               lambda: dot_product_attention(q, k, v, backend="xla")):
        with pytest.raises(ValueError, match="not a multiple of 4 key/value heads"):
            fn()
    with pytest.raises(ValueError, match="kv_heads"):
        flash_attention(q, k[..., :8], v)
    with pytest.raises(ValueError, match="not a multiple"):
        lower_for_platform("tpu", (1, 128, 6, 64), kv_heads=4)


@_slow
def test_tpu_gqa_kernels_under_the_tpu_simulator():
    """The TPU simulator (DMAs, SMEM/VMEM, raising on out-of-bounds reads) runs the GQA index maps: kv head
    h // group in forward/dq, query head kv_head * group + step // num_q in the dk/dv grid."""
    from jax.experimental.pallas import tpu as pltpu

    seg = packed_segment_ids([[20, 30, 14]], 64)
    q, k, v, do = random_qkv(jax.random.key(9), 1, 64, 2, 64, kv_heads=1)
    params = pltpu.InterpretParams(out_of_bounds_reads="raise", uninitialized_memory="nan")
    try:
        fn = lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=(32, 32), backend="tpu",  # noqa: E731
                                             interpret=params)
        out, grads = vjp_outputs(fn, q, k, v, do)
    finally:
        pltpu.reset_tpu_interpret_mode_state()
    ref_out, ref_grads = vjp_outputs(repeated_reference(seg), q, k, v, do)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    for g, rg in zip(grads, ref_grads):
        np.testing.assert_allclose(g, rg, atol=1e-4)
