"""The Llama training step's matmuls contract one axis each, and the rotary VJP equals autodiff's.

Why it matters (perf/RESULTS.md, "Llama family on CPU"): a dot_general that contracts two axes (batch and
length of a [batch, length, in] activation, or group and rows of a GQA probability block) is canonicalised
by XLA:CPU with a materialised transpose of one operand, strided and slow: 17% of a 125M Llama step's
op time before the fix. These tests read the traced program (jaxpr), so they do not depend on timing.
"""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from optiml_jax.kernels.xla_attention import xla_attention
from optiml_jax.models import LlamaConfig, init_model_params, model_for
from optiml_jax.models.llama import apply_rotary


def _dot_contractions(jaxpr) -> list[tuple[int, ...]]:
    """Contracting-axis tuples of every dot_general in a (closed) jaxpr, sub-jaxprs included."""
    found = []

    def visit(jp):
        for eqn in jp.eqns:
            if eqn.primitive.name == "dot_general":
                (lhs_contract, _), _ = eqn.params["dimension_numbers"]
                found.append(tuple(lhs_contract))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jaxpr.jaxpr)
    return found


def test_llama_train_step_dots_contract_one_axis():
    config = LlamaConfig(num_layers=1, hidden_size=32, num_heads=4, num_kv_heads=2, ffn_dim=48, vocab_size=64,
                         max_position_embeddings=64, attention_backend="xla", attention_block_sizes=(8,))
    model = model_for(config)
    params = nn.unbox(init_model_params(config, jax.random.key(0)))
    tokens = jnp.arange(2 * 16, dtype=jnp.int32).reshape(2, 16) % 60 + 3

    def loss(p):
        return jnp.mean(model.apply({"params": p}, tokens) ** 2)

    contractions = _dot_contractions(jax.make_jaxpr(jax.grad(loss))(params))
    # q/k/v/o, gate/up/down and the LM head, forward and both gradients, plus attention's blocks
    assert len(contractions) > 20
    assert all(len(c) == 1 for c in contractions), sorted(set(contractions))


def test_gqa_xla_attention_gradient_dots_contract_one_axis():
    q = jnp.ones((2, 24, 6, 8))
    k = v = jnp.ones((2, 24, 2, 8))

    def loss(q, k, v):
        return jnp.sum(xla_attention(q, k, v, None, block_q=8) ** 2)

    contractions = _dot_contractions(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v))
    assert contractions and all(len(c) == 1 for c in contractions), sorted(set(contractions))


def test_rotary_custom_vjp_equals_autodiff_of_the_formula():
    keys = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(keys[0], (2, 5, 3, 8))
    cos, sin = jax.random.normal(keys[1], (2, 5, 8)), jax.random.normal(keys[2], (2, 5, 8))
    g = jax.random.normal(keys[3], x.shape)

    def formula(x):  # Hugging Face's apply_rotary_pos_emb, autodiffed
        rotated = jnp.concatenate([-x[..., 4:], x[..., :4]], axis=-1)
        return x * cos[:, :, None] + rotated * sin[:, :, None]

    out, pullback = jax.vjp(lambda x: apply_rotary(x, cos, sin), x)
    ref_out, ref_pullback = jax.vjp(formula, x)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_allclose(pullback(g)[0], ref_pullback(g)[0], rtol=0, atol=1e-6)
