"""The OPT decoder in Flax Linen, numerically matching Hugging Face's PyTorch `OPTForCausalLM`.

Layout choices:
- Parameter names follow Hugging Face so checkpoint conversion is a rename plus reshapes.
- q/k/v kernels are [embed, heads, head_dim] and out_proj is [heads, head_dim, embed], so tensor
  parallelism over heads is a logical-axis rule rather than a reshape.
- Every parameter and key activation carries logical axis names; sharding is configuration.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from optiml_jax.models.common import EMBED_AXES, QKV_AXES, CausalLM, Projection, attend
from optiml_jax.models.common import compute_dtype as _dtype
from optiml_jax.models.common import constrain as _constrain
from optiml_jax.models.common import default_positions, layer_stack, lm_head_logits
from optiml_jax.models.common import normal_init as _init
from optiml_jax.models.common import with_axes as _param_with_axes
from optiml_jax.models.config import POSITION_OFFSET, OPTConfig

Array = jax.Array

__all__ = ["OPT", "OPTAttention", "OPTDecoder", "OPTDecoderLayer", "LayerNorm", "default_positions", "init_params",
           "lm_head_logits", "param_logical_axes", "tied_embedding"]


class LayerNorm(nn.Module):
    """LayerNorm with logically-named scale/bias (eps 1e-5, statistics in float32)."""

    config: OPTConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        cfg = self.config
        return nn.LayerNorm(
            epsilon=cfg.layer_norm_eps,
            dtype=_dtype(cfg),
            param_dtype=jnp.float32,
            use_scale=cfg.layer_norm_elementwise_affine,
            use_bias=cfg.layer_norm_elementwise_affine,
            scale_init=_param_with_axes(nn.initializers.ones, ("embed",)),
            bias_init=_param_with_axes(nn.initializers.zeros, ("embed",)),
            name="ln",
        )(x)


class OPTAttention(nn.Module):
    """Multi-head self-attention with an optional KV cache (Flax 'cache' collection, `common.attend`)."""

    config: OPTConfig

    @nn.compact
    def __call__(self, x: Array, segment_ids: Array, *, decode: bool = False) -> Array:
        cfg = self.config
        heads = (cfg.num_heads, cfg.head_dim)
        in_proj = functools.partial(
            Projection, cfg, 1, ("embed", "heads", "kv"), (cfg.hidden_size, *heads), ("heads", "kv"),
            use_bias=cfg.enable_bias,
        )
        q, k, v = (in_proj(name=name)(x) for name in ("q_proj", "k_proj", "v_proj"))
        q, k, v = (_constrain(t, QKV_AXES) for t in (q, k, v))
        out = _constrain(attend(self, cfg, q, k, v, segment_ids, decode=decode), QKV_AXES)
        out = Projection(cfg, 2, ("heads", "kv", "embed"), (*heads, cfg.hidden_size), ("embed",),
                         use_bias=cfg.enable_bias, name="out_proj")(out)
        return out


class OPTDecoderLayer(nn.Module):
    """One transformer block; pre-LN, or post-LN when `do_layer_norm_before` is False (350m)."""

    config: OPTConfig

    @nn.compact
    def __call__(self, x: Array, segment_ids: Array, deterministic: bool = True, decode: bool = False):
        cfg = self.config
        dtype = _dtype(cfg)
        pre_ln = cfg.do_layer_norm_before
        act_axes = EMBED_AXES

        residual = x
        h = LayerNorm(cfg, name="self_attn_layer_norm")(x) if pre_ln else x
        h = OPTAttention(cfg, name="self_attn")(h, segment_ids, decode=decode)
        h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
        x = residual + h
        if not pre_ln:
            x = LayerNorm(cfg, name="self_attn_layer_norm")(x)
        x = _constrain(x, act_axes)

        residual = x
        h = LayerNorm(cfg, name="final_layer_norm")(x) if pre_ln else x
        h = nn.Dense(
            cfg.ffn_dim, use_bias=cfg.enable_bias, dtype=dtype, param_dtype=jnp.float32,
            kernel_init=_param_with_axes(_init(cfg), ("embed", "mlp")),
            bias_init=_param_with_axes(nn.initializers.zeros, ("mlp",)), name="fc1",
        )(h)
        h = _constrain(nn.relu(h), ("activation_batch", "activation_length", "activation_mlp"))
        h = nn.Dense(
            cfg.hidden_size, use_bias=cfg.enable_bias, dtype=dtype, param_dtype=jnp.float32,
            kernel_init=_param_with_axes(_init(cfg), ("mlp", "embed")),
            bias_init=_param_with_axes(nn.initializers.zeros, ("embed",)), name="fc2",
        )(h)
        h = nn.Dropout(cfg.dropout_rate)(h, deterministic=deterministic)
        x = residual + h
        if not pre_ln:
            x = LayerNorm(cfg, name="final_layer_norm")(x)
        return _constrain(x, act_axes)


class OPTDecoder(nn.Module):
    config: OPTConfig

    @nn.compact
    def __call__(self, tokens, segment_ids, positions, deterministic: bool = True, decode: bool = False,
                 return_features: bool = False):
        cfg = self.config
        dtype = _dtype(cfg)
        embed_axis = "word_embed" if cfg.has_projections else "embed"
        embed_tokens = nn.Embed(
            cfg.vocab_size, cfg.embed_dim, dtype=dtype, param_dtype=jnp.float32,
            embedding_init=_param_with_axes(_init(cfg), ("vocab", embed_axis)), name="embed_tokens",
        )
        x = embed_tokens(tokens)
        if cfg.has_projections:
            x = nn.Dense(
                cfg.hidden_size, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                kernel_init=_param_with_axes(_init(cfg), ("word_embed", "embed")), name="project_in",
            )(x)
        pos_embed = nn.Embed(
            cfg.max_position_embeddings + POSITION_OFFSET, cfg.hidden_size, dtype=dtype, param_dtype=jnp.float32,
            embedding_init=_param_with_axes(_init(cfg), ("abs_pos", "embed")), name="embed_positions",
        )
        x = x + pos_embed(positions + POSITION_OFFSET)
        x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
        x = _constrain(x, EMBED_AXES)

        x = layer_stack(cfg, OPTDecoderLayer, x, (segment_ids,), deterministic, decode)

        if cfg.do_layer_norm_before:
            x = LayerNorm(cfg, name="final_layer_norm")(x)
        if cfg.has_projections:
            x = nn.Dense(
                cfg.embed_dim, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                kernel_init=_param_with_axes(_init(cfg), ("embed", "word_embed")), name="project_out",
            )(x)
        if return_features:
            return x
        return lm_head_logits(cfg, embed_tokens.embedding, x)


def tied_embedding(params: Any) -> Array:
    """The token embedding (= LM head) [vocab, embed_dim] from a parameter tree, boxed or not."""
    return nn.unbox(params)["decoder"]["embed_tokens"]["embedding"]


class OPT(CausalLM):
    """OPT causal language model (the `CausalLM` call contract)."""

    config: OPTConfig

    def logits_or_features(self, tokens, segment_ids, positions, deterministic, decode, return_features):
        return OPTDecoder(self.config, name="decoder")(tokens, segment_ids, positions, deterministic, decode,
                                                       return_features)


def init_params(config: OPTConfig, rng: Array, *, batch: int = 1, length: int = 8, boxed: bool = False) -> Any:
    """Initialise parameters (float32). Returns plain arrays unless `boxed` (logical-axis metadata kept)."""
    variables = OPT(config).init(rng, jnp.ones((batch, length), jnp.int32))
    params = variables["params"]
    return params if boxed else nn.unbox(params)


def param_logical_axes(config: OPTConfig) -> Any:
    """Pytree (same structure as params) of logical-axis PartitionSpecs, computed abstractly."""
    boxed = jax.eval_shape(lambda: OPT(config).init(jax.random.key(0), jnp.ones((1, 8), jnp.int32)))["params"]
    return nn.get_partition_spec(boxed)
