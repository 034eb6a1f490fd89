"""LM head + label-only cross-entropy computed chunk by chunk along the sequence, gradients included.

Why: the plain path materialises float32 logits [batch, length, vocab] and, in the backward pass, a
gradient of the same size. For OPT's 50,272-entry vocabulary that is 412 MB each at 4 x 512 tokens
(and 8 x 2048 x 50272 x 4 B = 3.3 GB at the paper's row length), the largest tensors of the step. Here
the head runs on `chunk_size` positions at a time inside one `lax.scan` and each chunk's logits die in
the same iteration: peak memory is one chunk's logits.

How the gradient avoids a second pass: the loss is linear in the per-token cross-entropies, so
d loss / d logits = (softmax - onehot) * token_weight is known as soon as a chunk's logits are. The
forward pass therefore also computes d features = dlogits @ E and accumulates d E += dlogits^T @ features
(the same three matmuls autodiff would run, no recomputation), and the custom VJP only scales them by the
incoming cotangent. It is used for training steps only (`make_train_step(loss_chunk_size=...)`); evaluation,
which needs no gradient, keeps the plain path.

Chunks run along the length axis, so a batch sharded over data/fsdp stays sharded; lengths that are not a
multiple of the chunk are padded with zero-weight positions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from optiml_jax.models import ModelConfig, lm_head_logits


def _chunks(x: jax.Array, chunk: int, pad_value=0) -> jax.Array:
    """[B, L, ...] -> [L/chunk, B, chunk, ...] (length padded up to a multiple of chunk)."""
    length = x.shape[1]
    pad = (-length) % chunk
    if pad:
        widths = [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)
        x = jnp.pad(x, widths, constant_values=pad_value)
    x = x.reshape(x.shape[0], -1, chunk, *x.shape[2:])
    return jnp.moveaxis(x, 1, 0)


def _unchunk(x: jax.Array, length: int) -> jax.Array:
    """Inverse of `_chunks`: [L/chunk, B, chunk, ...] -> [B, L, ...]."""
    x = jnp.moveaxis(x, 0, 1)
    x = x.reshape(x.shape[0], -1, *x.shape[3:])
    return x[:, :length]


def _forward_and_grads(config: ModelConfig, chunk: int, features, embedding, targets, token_weights):
    """(loss, metrics), (d loss/d features, d loss/d embedding) in one pass over the chunks."""
    dtype = features.dtype
    length = features.shape[1]
    emb = embedding.astype(jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32)
    xs = (_chunks(features, chunk), _chunks(targets, chunk), _chunks(token_weights.astype(jnp.float32), chunk))

    def body(d_embedding, inputs):
        h, t, w = inputs  # [B, c, E], [B, c], [B, c]
        logits = lm_head_logits(config, emb, h)  # float32 [B, c, V]; emb is already in the compute dtype
        row_max = jnp.max(logits, axis=-1, keepdims=True)
        exp = jnp.exp(logits - row_max)
        total = jnp.sum(exp, axis=-1, keepdims=True)
        log_z = (row_max + jnp.log(total))[..., 0]
        target_logit = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
        ce = log_z - target_logit
        label = (w != 0).astype(jnp.float32)
        correct = (jnp.argmax(logits, axis=-1) == t).astype(jnp.float32) * label
        stats = jnp.stack([jnp.sum(ce * w), jnp.sum(ce * label), jnp.sum(label), jnp.sum(correct)])
        # d (sum ce * w) / d logits = (softmax - onehot(t)) * w
        probs = exp / total
        is_target = jnp.arange(logits.shape[-1], dtype=t.dtype) == t[..., None]
        d_logits = (jnp.where(is_target, probs - 1.0, probs) * w[..., None]).astype(emb.dtype)
        d_h = jnp.einsum("bcv,ve->bce", d_logits, emb, preferred_element_type=jnp.float32).astype(dtype)
        d_embedding = d_embedding + jnp.einsum("bcv,bce->ve", d_logits, h.astype(emb.dtype),
                                               preferred_element_type=jnp.float32)
        return d_embedding, (stats, d_h)

    d_embedding, (stats, d_h) = jax.lax.scan(body, jnp.zeros(embedding.shape, jnp.float32), xs)
    stats = jnp.sum(stats, axis=0)
    metrics = {"ce_sum": stats[1], "label_tokens": stats[2], "correct_tokens": stats[3]}
    return (stats[0], metrics), (_unchunk(d_h, length), d_embedding.astype(embedding.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def chunked_cross_entropy(config: ModelConfig, chunk_size: int, features: jax.Array, embedding: jax.Array,
                          targets: jax.Array, token_weights: jax.Array) -> tuple[jax.Array, dict]:
    """(sum(ce * token_weights), metrics) for features [B, L, E] under the tied head `embedding` [V, E].

    Same value and metrics as `losses.weighted_cross_entropy(lm_head_logits(config, embedding, features),
    targets, token_weights)`; differentiable in `features` and `embedding` only.
    """
    return _forward_and_grads(config, chunk_size, features, embedding, targets, token_weights)[0]


def _bwd(config, chunk_size, grads, cotangents):
    del config, chunk_size
    g_loss, _ = cotangents  # metrics are not differentiated through
    d_features, d_embedding = grads
    g = g_loss.astype(jnp.float32)
    return ((d_features.astype(jnp.float32) * g).astype(d_features.dtype), d_embedding * g, None, None)


chunked_cross_entropy.defvjp(_forward_and_grads, _bwd)  # fwd residuals = the gradients
