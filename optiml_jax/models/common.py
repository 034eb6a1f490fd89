"""What the decoder families (`opt.py`, `llama.py`) share: the call contract (`CausalLM`), the attention call and
its KV cache, logical-axis helpers, multi-axis projections, the scan/remat layer stack, the LM head and the
unpacked-batch position rule.

Each family keeps its own parameter names (they follow its Hugging Face peer); nothing here adds a level to
the parameter or cache trees: helpers that need variables take the calling module (`attend(self, ...)`), so the
cache lives under the attention module exactly as if the code were inline.

A config is duck-typed: every family's config has `dtype`, `init_std`, `num_layers`, `scan_layers`,
`remat_policy`, `attention_backend` and `attention_block_sizes`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from optiml_jax.kernels import dot_product_attention
from optiml_jax.kernels.decode_attention import cached_attention, to_cache_layout

Array = jax.Array


def normal_init(config: Any):
    return nn.initializers.normal(stddev=config.init_std)


def with_axes(init, axes):
    return nn.with_logical_partitioning(init, axes)


def constrain(x: Array, axes: tuple[str, ...]) -> Array:
    return nn.with_logical_constraint(x, axes)


def compute_dtype(config: Any):
    return jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32


QKV_AXES = ("activation_batch", "activation_length", "activation_heads", "activation_kv")
KV_AXES = ("activation_batch", "activation_length", "activation_kv_heads", "activation_kv")
EMBED_AXES = ("activation_batch", "activation_length", "activation_embed")


class Projection(nn.Module):
    """Linear map from the trailing `in_dims` of x to `kernel_shape[in_dims:]`, with a multi-axis kernel.

    The kernel keeps one axis per logical dimension (q/k/v [embed, heads, head_dim], out [heads, head_dim,
    embed]) so tensor parallelism over heads is a sharding rule, but the product is computed as one 2-D
    matmul on row-major reshapes of x and the kernel (free bitcasts). A 3-D einsum ("...e,ehd->...hd")
    made XLA:CPU copy and transpose the kernel on every call: 2-D was 10% faster in a training step's
    projections and 4x faster in a batch-8 decode step. The batch and length axes of x are flattened too
    ([tokens, in]): with x left [batch, length, in], the kernel gradient contracts two axes (batch,
    length), and XLA:CPU materialised a transposed operand ([tokens, n] -> [n, tokens]) before every
    weight-gradient matmul (17% of a 125M Llama step's op time, the SwiGLU gradients the largest).

    Not `nn.DenseGeneral`: it initialises a flattened 2-D kernel and reshapes it, so a 3-axis
    logical-partitioning initializer meets a 2-D array and raises as soon as a mesh is set.
    """

    config: Any
    in_dims: int
    kernel_axes: tuple[str, ...]
    kernel_shape: tuple[int, ...]
    bias_axes: tuple[str, ...]
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        dtype = compute_dtype(cfg)
        kernel = self.param("kernel", with_axes(normal_init(cfg), self.kernel_axes), self.kernel_shape, jnp.float32)
        in_shape, out_shape = self.kernel_shape[: self.in_dims], self.kernel_shape[self.in_dims:]
        n_in, n_out = math.prod(in_shape), math.prod(out_shape)
        batch_shape = x.shape[: x.ndim - self.in_dims]
        y = x.astype(dtype).reshape(-1, n_in) @ kernel.astype(dtype).reshape(n_in, n_out)
        if self.use_bias:
            bias = self.param("bias", with_axes(nn.initializers.zeros, self.bias_axes), out_shape, jnp.float32)
            y = y + bias.astype(dtype).reshape(n_out)
        return y.reshape(*batch_shape, *out_shape)


# ------------------------------------------------------------------------------------- attention + cache


def attend(module: nn.Module, config: Any, q: Array, k: Array, v: Array, segment_ids: Array, *,
           decode: bool = False) -> Array:
    """Causal self-attention for `module` (an attention layer, inside its compact `__call__`).

    q [B, L, H, D]; k/v [B, L, KVH, D] with KVH dividing H (grouped-query attention when smaller). Without
    `decode` this is `dot_product_attention` with the config's backend and block sizes; with it, keys and
    values go through the KV cache in `module`'s 'cache' collection (see `_attend_with_cache`).
    """
    if decode:
        return _attend_with_cache(module, q, k, v, segment_ids)
    return dot_product_attention(
        q, k, v, segment_ids, causal=True, backend=config.attention_backend,
        block_sizes=config.attention_block_sizes,
    )


def _attend_with_cache(module: nn.Module, q: Array, k: Array, v: Array, segment_ids: Array) -> Array:
    """Append this call's keys/values at `cache_index` and attend over everything cached.

    The cache is sized by the first (initialising) call; later calls may feed one token
    (a decode step) or several (prefill). Keys never written keep segment id 0, so they are masked.
    Keys and values are cached heads-major ([batch, kv_heads, length, head_dim], see
    `kernels.decode_attention`) so decode steps never transpose the whole cache; with grouped-query
    attention only the key/value heads are stored.
    """
    is_initialized = module.has_variable("cache", "cached_key")
    k, v = to_cache_layout(k), to_cache_layout(v)
    cached_key = module.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cached_value = module.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    cached_segments = module.variable("cache", "cached_segment_ids", jnp.zeros, segment_ids.shape, jnp.int32)
    cache_index = module.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if not is_initialized:
        # Shape-only initialisation pass: attend over this call's tokens alone.
        return cached_attention(q, k, v, segment_ids, segment_ids, causal=True)
    idx = cache_index.value
    cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, k.astype(cached_key.value.dtype), (0, 0, idx, 0))
    cached_value.value = jax.lax.dynamic_update_slice(
        cached_value.value, v.astype(cached_value.value.dtype), (0, 0, idx, 0)
    )
    cached_segments.value = jax.lax.dynamic_update_slice(
        cached_segments.value, segment_ids.astype(jnp.int32), (0, idx)
    )
    cache_index.value = idx + q.shape[1]
    return cached_attention(
        q, cached_key.value, cached_value.value, segment_ids, cached_segments.value, query_offset=idx, causal=True
    )


# ------------------------------------------------------------------------------------- scan / remat stack

REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


@functools.cache
def _scanned(layer_cls: type) -> type:
    """nn.scan wants (carry, *xs) -> (carry, y); the hidden state is the carry."""

    class Scanned(layer_cls):
        @nn.compact
        def __call__(self, x, *args):
            return super().__call__(x, *args), None

    Scanned.__name__ = Scanned.__qualname__ = f"Scanned{layer_cls.__name__}"
    return Scanned


def _layer_class(cfg: Any, layer_cls: type, scanned: bool, num_broadcast: int):
    cls = _scanned(layer_cls) if scanned else layer_cls
    if cfg.remat_policy == "none":
        return cls
    # Layer signature (self, x, *broadcast, deterministic, decode): the two Python bools are static for remat.
    static = (num_broadcast + 2, num_broadcast + 3)
    return nn.remat(cls, policy=REMAT_POLICIES[cfg.remat_policy], prevent_cse=not scanned, static_argnums=static)


def layer_stack(cfg: Any, layer_cls: type, x: Array, broadcast: tuple, deterministic: bool, decode: bool) -> Array:
    """`cfg.num_layers` layers of `layer_cls(cfg)` applied to x, called inside the parent's compact `__call__`.

    `layer_cls.__call__(x, *broadcast, deterministic, decode) -> x`. Unrolled (`layers_{i}`) or, with
    `cfg.scan_layers`, one `nn.scan` (`layers`, parameters and cache stacked on a leading 'layers' axis);
    `cfg.remat_policy` wraps the layer in `nn.remat`.
    """
    if cfg.scan_layers:
        scanned = nn.scan(
            _layer_class(cfg, layer_cls, True, len(broadcast)),
            variable_axes={"params": 0, "cache": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=(nn.broadcast,) * (len(broadcast) + 2),
            length=cfg.num_layers,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )
        x, _ = scanned(cfg, name="layers")(x, *broadcast, deterministic, decode)
        return x
    cls = _layer_class(cfg, layer_cls, False, len(broadcast))
    for i in range(cfg.num_layers):
        x = cls(cfg, name=f"layers_{i}")(x, *broadcast, deterministic, decode)
    return x


# ----------------------------------------------------------------------------------- LM head, positions


def lm_head_logits(config: Any, embedding: Array, features: Array) -> Array:
    """The LM head from its [vocab, embed_dim] matrix (the tied token embedding, or an untied head stored
    the same way): float32 logits [..., vocab].

    `features` are what a model returns with `return_features=True` (after the final norm). Callers that
    need logits for a few positions only (the last prompt token when generating) or a chunk at a time (the
    training loss) call this on a slice.
    """
    dtype = compute_dtype(config)
    embedding = jnp.asarray(embedding).astype(dtype)
    # [tokens, embed] x [vocab, embed]^T, one contracted axis (see `Projection`: a [batch, length, embed]
    # operand made XLA:CPU transpose the whole logits gradient for the head's weight gradient).
    flat = features.astype(dtype).reshape(-1, features.shape[-1])
    logits = jnp.dot(flat, embedding.T).astype(jnp.float32).reshape(*features.shape[:-1], embedding.shape[0])
    if logits.ndim == 3:
        logits = constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))
    return logits


def default_positions(tokens: Array, pad_token_id: int | None) -> tuple[Array, Array]:
    """Hugging Face's rule for an unpacked batch: pad tokens are segment 0, positions count non-pad tokens.

    `pad_token_id=None` (a model without a pad token): every token is real, positions are 0, 1, 2, ...
    """
    if pad_token_id is None:
        nonpad = jnp.ones(tokens.shape, jnp.int32)
    else:
        nonpad = (tokens != pad_token_id).astype(jnp.int32)
    positions = jnp.cumsum(nonpad, axis=-1) * nonpad - 1
    return nonpad, positions


def segments_and_positions(tokens: Array, pad_token_id: int | None, decoder_segment_ids, decoder_positions):
    """(segment_ids, positions) for a model call: packed (both given, SeqIO/T5X names) or the unpacked rule."""
    if decoder_segment_ids is None:
        segment_ids, positions = default_positions(tokens, pad_token_id)
        if decoder_positions is not None:
            positions = decoder_positions
    else:
        segment_ids = jnp.asarray(decoder_segment_ids, jnp.int32)
        if decoder_positions is None:
            raise ValueError("decoder_positions is required with decoder_segment_ids (packed batches)")
        positions = decoder_positions
    return segment_ids, jnp.maximum(jnp.asarray(positions, jnp.int32), -1)


class CausalLM(nn.Module):
    """The call contract every family's model keeps (`OPT`, `Llama`), written once.

    `apply({"params": p}, tokens)` returns float32 logits [batch, length, vocab] with Hugging Face semantics.
    Packed batches pass `decoder_segment_ids` and `decoder_positions` (SeqIO/T5X names); unpacked ones get
    `default_positions`. `return_features=True` returns the hidden states the LM head reads instead of logits
    ([batch, length, embed_dim], compute dtype); `lm_head_logits` turns any slice of them into logits.
    A family sets `config` and gives `logits_or_features` (called inside this compact method, so the
    submodules it builds are named exactly as if they were built here).
    """

    @nn.compact
    def __call__(
        self,
        tokens: Array,
        decoder_segment_ids: Array | None = None,
        decoder_positions: Array | None = None,
        *,
        deterministic: bool = True,
        decode: bool = False,
        return_features: bool = False,
    ) -> Array:
        tokens = jnp.asarray(tokens, jnp.int32)
        segment_ids, positions = segments_and_positions(tokens, self.config.pad_token_id, decoder_segment_ids,
                                                        decoder_positions)
        return self.logits_or_features(tokens, segment_ids, positions, deterministic, decode, return_features)

    def logits_or_features(self, tokens: Array, segment_ids: Array, positions: Array, deterministic: bool,
                           decode: bool, return_features: bool) -> Array:
        raise NotImplementedError
