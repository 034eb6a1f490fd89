"""The 'pallas' backend inside the model (a full train step) and under a sharded mesh; the 'splash' and
'cudnn' peers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flash_cases import packed_segment_ids, random_qkv
from optiml_jax.kernels import get_backend, reference_attention
from optiml_jax.kernels.pallas_attention import flash_attention, sharded_flash_attention
from optiml_jax.models import OPT, OPTConfig


def _packed_batch(length=32):
    seg = packed_segment_ids([[10, 13, 6], [32]], length)
    pos = np.zeros(seg.shape, np.int32)
    for r in range(seg.shape[0]):
        for s in np.unique(np.asarray(seg[r])):
            idx = np.where(np.asarray(seg[r]) == s)[0]
            pos[r, idx] = np.arange(len(idx))
    tokens = jax.random.randint(jax.random.key(0), seg.shape, 3, 128)
    tokens = jnp.where(seg == 0, 1, tokens)
    return tokens, seg, jnp.asarray(pos)


def _loss_and_grads(backend, **overrides):
    config = OPTConfig.preset(
        "tiny", vocab_size=128, attention_backend=backend, attention_block_sizes=(16, 16), **overrides
    )
    model = OPT(config)
    tokens, seg, pos = _packed_batch()
    params = nn.unbox(model.init(jax.random.key(1), tokens[:, :8])["params"])
    targets = jnp.roll(tokens, -1, axis=1)
    weights = (seg != 0).astype(jnp.float32)

    def loss_fn(p):
        logits = model.apply({"params": p}, tokens, decoder_segment_ids=seg, decoder_positions=pos)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
        return jnp.sum(nll * weights) / jnp.sum(weights)

    return jax.jit(jax.value_and_grad(loss_fn))(params)


@pytest.mark.parametrize(
    "overrides",
    [{"num_layers": 1}, pytest.param({"scan_layers": True}, marks=pytest.mark.slow)],
    ids=["1layer", "2layers_scanned"],
)
def test_tiny_opt_train_step_matches_reference(overrides):
    loss_p, grads_p = _loss_and_grads("pallas", **overrides)
    loss_r, grads_r = _loss_and_grads("reference", **overrides)
    np.testing.assert_allclose(loss_p, loss_r, rtol=1e-6, atol=1e-6)
    flat_p, flat_r = jax.tree.leaves(grads_p), jax.tree.leaves(grads_r)
    assert len(flat_p) == len(flat_r)
    for gp, gr in zip(flat_p, flat_r):
        np.testing.assert_allclose(gp, gr, atol=1e-5, rtol=1e-4)


def test_sharded_flash_attention_on_8_devices():
    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake CPU) devices; tests/conftest.py sets XLA_FLAGS")
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    seg = packed_segment_ids([[20, 40], [64], [10, 10, 10], [63]], 64)
    q, k, v, do = random_qkv(jax.random.key(8), 4, 64, 2, 64)
    fn = jax.jit(lambda q, k, v: sharded_flash_attention(mesh, q, k, v, seg, block_sizes=(32, 32)))
    out, pullback = jax.vjp(fn, q, k, v)
    ref, ref_pullback = jax.vjp(lambda q, k, v: reference_attention(q, k, v, seg), q, k, v)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    for g, rg in zip(pullback(do), ref_pullback(do)):
        np.testing.assert_allclose(g, rg, atol=1e-4)


def test_matches_jax_bundled_splash_attention():
    """Same inputs through JAX's own TPU splash kernel (interpret mode): same outputs and dq."""
    seg = packed_segment_ids([[30, 50, 40], [100]], 128)
    q, k, v, do = random_qkv(jax.random.key(9), 2, 128, 2, 64)
    splash = get_backend("splash")
    splash_fn = lambda q, k, v: splash(q, k, v, seg, causal=True, sm_scale=None, block_sizes=None)
    ours_fn = lambda q, k, v: flash_attention(q, k, v, seg, block_sizes=(32, 32))
    out_s, pull_s = jax.vjp(jax.jit(splash_fn), q, k, v)
    out_o, pull_o = jax.vjp(jax.jit(ours_fn), q, k, v)
    np.testing.assert_allclose(out_o, out_s, atol=1e-5)
    for go, gs in zip(pull_o(do), pull_s(do)):
        np.testing.assert_allclose(go, gs, atol=1e-4)


def test_cudnn_backend_refuses_segment_ids():
    q, k, v, _ = random_qkv(jax.random.key(10), 1, 16, 1, 64)
    with pytest.raises(ValueError, match="cannot mask packed segments"):
        get_backend("cudnn")(q, k, v, jnp.ones((1, 16), jnp.int32), causal=True, sm_scale=None, block_sizes=None)
