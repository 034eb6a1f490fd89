"""The CPU-tuned 'xla' backend against the reference backend: outputs, gradients, padding, and in the model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flash_cases import packed_segment_ids, random_qkv, vjp_outputs
from optiml_jax.kernels import dot_product_attention, get_backend, reference_attention, resolve_backend
from optiml_jax.kernels.xla_attention import _query_blocks, xla_attention
from optiml_jax.models import OPT, OPTConfig

# (length, block_q, causal, rows of example lengths): blocks that do not divide the length, one block
# covering everything, padding-only rows, segments crossing block boundaries, the non-causal path.
CASES = [
    (100, 32, True, [[37, 50], [100], [0]]),
    (64, 64, True, [[10, 20, 30], [1, 63]]),
    (96, 40, False, [[30, 30, 30], [95]]),
    (48, 16, True, [[48], [5, 5, 5]]),
]


@pytest.mark.parametrize("length,block_q,causal,rows", CASES)
def test_forward_and_grads_match_reference(length, block_q, causal, rows):
    seg = packed_segment_ids([r if r != [0] else [] for r in rows], length)
    q, k, v, do = random_qkv(jax.random.key(length + block_q), len(rows), length, 3, 16)
    xla = jax.jit(lambda q, k, v: xla_attention(q, k, v, seg, causal=causal, block_q=block_q))
    out, grads = vjp_outputs(xla, q, k, v, do)
    ref_out, ref_grads = vjp_outputs(lambda q, k, v: reference_attention(q, k, v, seg, causal=causal), q, k, v, do)
    assert out.shape == q.shape and out.dtype == q.dtype
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=2e-6)
    for g, rg in zip(grads, ref_grads):
        assert np.isfinite(np.asarray(g)).all()
        np.testing.assert_allclose(g, rg, rtol=0, atol=2e-5)
    # padding queries output exactly zero; padding keys get exactly zero key/value gradient
    pad = np.asarray(seg) == 0
    assert not np.asarray(out)[pad].any()
    assert not np.asarray(grads[0])[pad].any()
    assert not np.asarray(grads[1])[pad].any() and not np.asarray(grads[2])[pad].any()


def test_no_segment_ids_and_custom_scale_and_bfloat16():
    q, k, v, _ = random_qkv(jax.random.key(3), 2, 40, 2, 8, jnp.bfloat16)
    out = xla_attention(q, k, v, None, sm_scale=0.3, block_q=16)
    ref = reference_attention(q, k, v, None, sm_scale=0.3)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=2e-2)


def test_causal_blocks_skip_the_upper_triangle():
    assert _query_blocks(100, 100, 32, True) == [(0, 32, 32), (32, 64, 64), (64, 96, 96), (96, 100, 100)]
    assert _query_blocks(100, 100, 64, False) == [(0, 64, 100), (64, 100, 100)]


def test_registry_auto_picks_xla_on_cpu_and_rejects_cross_attention():
    assert jax.default_backend() == "cpu"
    assert resolve_backend("auto") == "xla"
    seg = packed_segment_ids([[5, 7]], 12)
    q, k, v, _ = random_qkv(jax.random.key(0), 1, 12, 2, 8)
    via_registry = dot_product_attention(q, k, v, seg, backend="auto", block_sizes=(4, 4))
    np.testing.assert_allclose(via_registry, reference_attention(q, k, v, seg), atol=2e-6)
    with pytest.raises(ValueError, match="self-attention"):
        get_backend("xla")(q, k[:, :6], v[:, :6], seg, causal=True, sm_scale=None)


def test_tiny_opt_train_step_matches_reference_backend():
    seg = packed_segment_ids([[9, 14, 5], [32]], 32)
    pos = np.zeros(seg.shape, np.int32)
    for r in range(seg.shape[0]):
        for s in np.unique(np.asarray(seg[r])):
            idx = np.where(np.asarray(seg[r]) == s)[0]
            pos[r, idx] = np.arange(len(idx))
    tokens = jnp.where(seg == 0, 1, jax.random.randint(jax.random.key(0), seg.shape, 3, 128))
    targets = jnp.roll(tokens, -1, axis=1)
    weights = (seg != 0).astype(jnp.float32)

    def loss_and_grads(backend):
        config = OPTConfig.preset("tiny", vocab_size=128, num_layers=2, attention_backend=backend,
                                  attention_block_sizes=(8,))
        model = OPT(config)
        params = nn.unbox(model.init(jax.random.key(1), tokens[:, :8])["params"])

        def loss_fn(p):
            logits = model.apply({"params": p}, tokens, decoder_segment_ids=seg, decoder_positions=pos)
            nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
            return jnp.sum(nll * weights) / jnp.sum(weights)

        return jax.jit(jax.value_and_grad(loss_fn))(params)

    loss_x, grads_x = loss_and_grads("xla")
    loss_r, grads_r = loss_and_grads("reference")
    np.testing.assert_allclose(loss_x, loss_r, rtol=1e-6, atol=1e-6)
    for gx, gr in zip(jax.tree.leaves(grads_x), jax.tree.leaves(grads_r)):
        np.testing.assert_allclose(gx, gr, atol=1e-5, rtol=1e-4)
